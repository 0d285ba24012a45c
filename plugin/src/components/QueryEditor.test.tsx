import React from 'react';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';

import { QueryEditor } from './QueryEditor';
import { DataSource } from '../datasource';
import { HubQuery, QueryType } from '../types';

function fakeDatasource(bureaus: string[] = ['consular', 'health'], services = [{ name: 'booking', tenant: 'consular', target: 'booking', signal: 'booking_rate' }]) {
  return {
    getBureaus: jest.fn().mockResolvedValue(bureaus),
    getServices: jest.fn().mockResolvedValue(services),
  } as unknown as DataSource;
}

async function setup(query: Partial<HubQuery>, ds = fakeDatasource()) {
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const utils = render(
    <QueryEditor query={{ refId: 'A', ...query } as HubQuery} onChange={onChange} onRunQuery={onRunQuery} datasource={ds} />
  );
  // Let the pickers' options load.
  await act(async () => {});
  return { ...utils, onChange, onRunQuery, ds };
}

// openSelect opens a Grafana (react-select) picker by its input.
function openSelect(input: HTMLElement) {
  fireEvent.focus(input);
  fireEvent.keyDown(input, { key: 'ArrowDown', keyCode: 40 });
}

describe('QueryEditor', () => {
  it('shows the PromQL editor by default and reports expression changes', async () => {
    const { onChange } = await setup({});
    const expr = screen.getByLabelText('PromQL');
    fireEvent.change(expr, { target: { value: 'sum by (bureau) (up)' } });
    expect(onChange).toHaveBeenCalledWith(expect.objectContaining({ expr: 'sum by (bureau) (up)' }));
    expect(screen.queryByLabelText('Service')).not.toBeInTheDocument();
  });

  it('fills the bureau picker from the hub and adds the chosen bureau', async () => {
    const { onChange, onRunQuery, ds } = await setup({ queryType: QueryType.PromQL, expr: 'up', bureaus: ['consular'] });
    expect(ds.getBureaus).toHaveBeenCalled();
    expect(screen.getByText('consular')).toBeInTheDocument();
    openSelect(screen.getByLabelText('Bureaus'));
    const option = await screen.findByText('health');
    fireEvent.click(option);
    expect(onChange).toHaveBeenCalledWith(expect.objectContaining({ bureaus: ['consular', 'health'] }));
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('switches the query type and shows the capacity fields with the service picker', async () => {
    const { onChange, rerender, ds } = await setup({ expr: 'up' });
    openSelect(screen.getByLabelText('Query type'));
    fireEvent.click(await screen.findByText('Capacity'));
    expect(onChange).toHaveBeenCalledWith(expect.objectContaining({ queryType: QueryType.Capacity, expr: 'up' }));

    const onChange2 = jest.fn();
    rerender(
      <QueryEditor
        query={{ refId: 'A', queryType: QueryType.Capacity } as HubQuery}
        onChange={onChange2}
        onRunQuery={jest.fn()}
        datasource={ds}
      />
    );
    expect(screen.queryByLabelText('PromQL')).not.toBeInTheDocument();
    openSelect(screen.getByLabelText('Service'));
    fireEvent.click(await screen.findByText('booking'));
    expect(onChange2).toHaveBeenCalledWith(expect.objectContaining({ service: 'booking' }));
    fireEvent.change(screen.getByLabelText('Target'), { target: { value: 'booking-eu' } });
    expect(onChange2).toHaveBeenCalledWith(expect.objectContaining({ target: 'booking-eu' }));
  });

  it('splits alert matchers on semicolons', async () => {
    const { onChange } = await setup({ queryType: QueryType.AlertHistory });
    fireEvent.change(screen.getByPlaceholderText('{severity="critical"}'), {
      target: { value: '{alertname="A"}; {bureau="health"}' },
    });
    expect(onChange).toHaveBeenCalledWith(expect.objectContaining({ matchers: ['{alertname="A"}', '{bureau="health"}'] }));
  });

  it('keeps working when the hub cannot list bureaus', async () => {
    const ds = {
      getBureaus: jest.fn().mockRejectedValue(new Error('401')),
      getServices: jest.fn().mockRejectedValue(new Error('401')),
    } as unknown as DataSource;
    await setup({ queryType: QueryType.AutoscaleActions }, ds);
    await waitFor(() => expect(screen.getByLabelText('Bureaus')).toBeInTheDocument());
    expect(screen.getByLabelText('Events')).toBeInTheDocument();
  });
});
