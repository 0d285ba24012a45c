// force timezone to UTC to allow tests to work regardless of local timezone
// generally used by snapshots, but can affect specific tests
process.env.TZ = 'UTC';

const base = require('./.config/jest.config');
const { grafanaESModules, nodeModulesToTransform } = require('./.config/jest/utils');

// @grafana/* 13 pull in ESM-only packages the scaffold (made for 12.x) does
// not list, and .mjs files its transform pattern does not cover: transform
// both with the scaffold's swc settings.
const swc = Object.values(base.transform)[0];
const moreESModules = ['@react-hookz/web', '@ver0/deep-equal'];

module.exports = {
  // Jest configuration provided by Grafana scaffolding
  ...base,
  transform: {
    ...base.transform,
    '^.+\\.mjs$': swc,
  },
  transformIgnorePatterns: [nodeModulesToTransform([...grafanaESModules, ...moreESModules])],
};
