import React, { ChangeEvent, useEffect, useState } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineSwitch, Input, MultiSelect, Select, Stack, TextArea } from '@grafana/ui';

import { DataSource } from '../datasource';
import { HubOptions, HubQuery, QueryType, ServiceOption, queryTypeOptions } from '../types';

type Props = QueryEditorProps<DataSource, HubQuery, HubOptions>;

const eventOptions: Array<SelectableValue<string>> = [
  { label: 'Actions and outcomes', value: '' },
  { label: 'All (with decisions)', value: 'all' },
  { label: 'Decisions', value: 'decision' },
  { label: 'Actions', value: 'action' },
];

/** Loads the picker options once per data source; failures leave them empty. */
function useOptions<T>(load: () => Promise<T[]>, deps: unknown[]): T[] {
  const [items, setItems] = useState<T[]>([]);
  useEffect(() => {
    let live = true;
    load()
      .then((v) => live && setItems(v ?? []))
      .catch(() => live && setItems([]));
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return items;
}

export function QueryEditor({ query, onChange, onRunQuery, datasource }: Props) {
  const queryType = query.queryType ?? QueryType.PromQL;
  const bureaus = useOptions(() => datasource.getBureaus(), [datasource]);
  const services = useOptions<ServiceOption>(() => datasource.getServices(), [datasource]);

  const set = (patch: Partial<HubQuery>, run = false) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  const text = (key: keyof HubQuery) => (e: ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) =>
    set({ [key]: e.target.value } as Partial<HubQuery>);

  const bureauPicker = (
    <InlineField label="Bureaus" labelWidth={14} tooltip="Restrict to these bureaus; empty: all the token sees">
      <MultiSelect
        inputId="query-editor-bureaus"
        aria-label="Bureaus"
        options={bureaus.map((b) => ({ label: b, value: b }))}
        value={query.bureaus ?? []}
        onChange={(v: Array<SelectableValue<string>>) => set({ bureaus: v.map((o) => o.value!).filter((b) => b) }, true)}
        placeholder="all bureaus"
        allowCustomValue
        width={40}
      />
    </InlineField>
  );
  const serviceOptions = services.map((s) => ({ label: s.name, value: s.name, description: `bureau ${s.tenant}` }));
  const servicePicker = (label: string) => (
    <InlineField label="Service" labelWidth={14} tooltip={label}>
      <Select
        inputId="query-editor-service"
        aria-label="Service"
        options={serviceOptions}
        value={query.service ?? null}
        onChange={(v: SelectableValue<string> | null) => set({ service: v?.value ?? '' }, true)}
        placeholder="choose a service"
        allowCustomValue
        isClearable
        width={30}
      />
    </InlineField>
  );

  return (
    <Stack direction="column" gap={1}>
      <InlineField label="Query type" labelWidth={14}>
        <Select
          inputId="query-editor-type"
          aria-label="Query type"
          options={queryTypeOptions}
          value={queryType}
          onChange={(v: SelectableValue<QueryType>) => set({ queryType: v.value }, true)}
          width={30}
        />
      </InlineField>

      {queryType === QueryType.PromQL && (
        <>
          <InlineField label="PromQL" labelWidth={14} grow>
            <TextArea
              id="query-editor-expr"
              aria-label="PromQL"
              value={query.expr ?? ''}
              onChange={text('expr')}
              onBlur={onRunQuery}
              placeholder='sum by (bureau) (rate(http_requests_total[$__rate_interval]))'
              rows={3}
            />
          </InlineField>
          <Stack gap={1}>
            {bureauPicker}
            <InlineField label="Legend" labelWidth={10}>
              <Input
                id="query-editor-legend"
                value={query.legendFormat ?? ''}
                onChange={text('legendFormat')}
                onBlur={onRunQuery}
                placeholder="{{bureau}}"
                width={20}
              />
            </InlineField>
            <InlineField label="Instant" labelWidth={10}>
              <InlineSwitch
                id="query-editor-instant"
                value={!!query.instant}
                onChange={(e) => set({ instant: e.currentTarget.checked }, true)}
              />
            </InlineField>
          </Stack>
        </>
      )}

      {queryType === QueryType.Capacity && (
        <>
          {servicePicker('The hosted service whose capacity to show')}
          <Stack gap={1}>
            <InlineField label="Target" labelWidth={14} tooltip="Autoscale target; default: the service's name">
              <Input id="query-editor-target" value={query.target ?? ''} onChange={text('target')} onBlur={onRunQuery} width={20} />
            </InlineField>
            <InlineField label="Signal" labelWidth={10} tooltip="Forecast signal; default: the target's signal">
              <Input id="query-editor-signal" value={query.signal ?? ''} onChange={text('signal')} onBlur={onRunQuery} width={20} />
            </InlineField>
          </Stack>
          <InlineField
            label="Rate"
            labelWidth={14}
            grow
            tooltip="Request rate expression; default: the service's load balancer requests (bureauhub_refsvc_lb_requests_total)"
          >
            <Input id="query-editor-rate" value={query.rateExpr ?? ''} onChange={text('rateExpr')} onBlur={onRunQuery} />
          </InlineField>
        </>
      )}

      {(queryType === QueryType.AlertHistory || queryType === QueryType.AlertAnnotations) && (
        <Stack gap={1}>
          {bureauPicker}
          <InlineField label="Match" labelWidth={10} tooltip='Alert label selectors, ORed, separated by ";", e.g. {alertname="X"}'>
            <Input
              id="query-editor-matchers"
              value={(query.matchers ?? []).join('; ')}
              onChange={(e: ChangeEvent<HTMLInputElement>) =>
                set({ matchers: e.target.value.split(';').map((m) => m.trim()).filter((m) => m) })
              }
              onBlur={onRunQuery}
              placeholder='{severity="critical"}'
              width={40}
            />
          </InlineField>
        </Stack>
      )}

      {(queryType === QueryType.AutoscaleActions || queryType === QueryType.AutoscaleAnnotations) && (
        <Stack gap={1}>
          {bureauPicker}
          {servicePicker('Only this target (autoscale targets are named after their service)')}
          {queryType === QueryType.AutoscaleActions && (
            <InlineField label="Events" labelWidth={10}>
              <Select
                inputId="query-editor-events"
                aria-label="Events"
                options={eventOptions}
                value={query.events ?? ''}
                onChange={(v: SelectableValue<string>) => set({ events: v.value ?? '' }, true)}
                width={25}
              />
            </InlineField>
          )}
        </Stack>
      )}
    </Stack>
  );
}
