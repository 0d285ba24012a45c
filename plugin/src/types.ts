import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/** Query types; the backend dispatches on them (pkg/plugin/query.go). */
export enum QueryType {
  PromQL = 'promql',
  Capacity = 'capacity',
  AlertHistory = 'alertHistory',
  AutoscaleActions = 'autoscaleActions',
  AlertAnnotations = 'alertAnnotations',
  AutoscaleAnnotations = 'autoscaleAnnotations',
}

export const queryTypeOptions: Array<{ label: string; value: QueryType; description: string }> = [
  { label: 'PromQL', value: QueryType.PromQL, description: 'PromQL across bureaus' },
  { label: 'Capacity', value: QueryType.Capacity, description: 'Requests, forecast, recommended and actual replicas' },
  { label: 'Alert history', value: QueryType.AlertHistory, description: 'Alert state changes and notifications (table)' },
  { label: 'Autoscale actions', value: QueryType.AutoscaleActions, description: 'Scaling actions with explanations (table)' },
  { label: 'Alert annotations', value: QueryType.AlertAnnotations, description: 'Alert episodes as annotations' },
  { label: 'Autoscale annotations', value: QueryType.AutoscaleAnnotations, description: 'Scaling actions as annotations' },
];

/** One query, as the backend's Query (pkg/plugin/query.go) reads it. */
export interface HubQuery extends DataQuery {
  queryType?: QueryType;
  expr?: string;
  instant?: boolean;
  legendFormat?: string;
  bureaus?: string[];
  service?: string;
  target?: string;
  signal?: string;
  rateExpr?: string;
  matchers?: string[];
  events?: string;
}

export const DEFAULT_QUERY: Partial<HubQuery> = {
  queryType: QueryType.PromQL,
};

/** jsonData of the data source. */
export interface HubOptions extends DataSourceJsonData {
  url?: string;
}

/** secureJsonData: only ever sent to the backend. */
export interface HubSecureJsonData {
  token?: string;
}

/** An entry of the backend's services resource. */
export interface ServiceOption {
  name: string;
  tenant: string;
  target?: string;
  signal?: string;
}
