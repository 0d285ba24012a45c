import { CoreApp, DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { DEFAULT_QUERY, HubOptions, HubQuery, QueryType, ServiceOption } from './types';

export class DataSource extends DataSourceWithBackend<HubQuery, HubOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<HubOptions>) {
    super(instanceSettings);
    // Annotation queries use the same query editor and backend; the
    // annotation query types return time, timeEnd, title, text and tags.
    this.annotations = {};
  }

  getDefaultQuery(_: CoreApp): Partial<HubQuery> {
    return DEFAULT_QUERY;
  }

  applyTemplateVariables(query: HubQuery, scopedVars: ScopedVars): HubQuery {
    const srv = getTemplateSrv();
    const one = (s?: string) => (s ? srv.replace(s, scopedVars) : s);
    // A multi-value variable in the bureau picker expands to its values.
    const bureaus = query.bureaus?.flatMap((b) => srv.replace(b, scopedVars, 'csv').split(',')).filter((b) => b);
    return {
      ...query,
      expr: one(query.expr),
      legendFormat: query.legendFormat,
      service: one(query.service),
      target: one(query.target),
      signal: one(query.signal),
      rateExpr: one(query.rateExpr),
      matchers: query.matchers?.map((m) => srv.replace(m, scopedVars)),
      bureaus,
    };
  }

  filterQuery(query: HubQuery): boolean {
    switch (query.queryType ?? QueryType.PromQL) {
      case QueryType.PromQL:
        return !!query.expr;
      case QueryType.Capacity:
        return !!query.service;
      default:
        return true;
    }
  }

  /** The bureaus the token sees (values of the bureau label). */
  getBureaus(): Promise<string[]> {
    return this.getResource<string[]>('bureaus');
  }

  /** The hosted services the token sees, with autoscale target and signal. */
  getServices(): Promise<ServiceOption[]> {
    return this.getResource<ServiceOption[]>('services');
  }
}
