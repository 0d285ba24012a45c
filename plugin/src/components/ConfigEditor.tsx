import React, { ChangeEvent } from 'react';
import { InlineField, Input, SecretInput } from '@grafana/ui';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { HubOptions, HubSecureJsonData } from '../types';

interface Props extends DataSourcePluginOptionsEditorProps<HubOptions, HubSecureJsonData> {}

export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields, secureJsonData } = options;

  const onURLChange = (event: ChangeEvent<HTMLInputElement>) => {
    onOptionsChange({ ...options, jsonData: { ...jsonData, url: event.target.value } });
  };
  const onTokenChange = (event: ChangeEvent<HTMLInputElement>) => {
    onOptionsChange({ ...options, secureJsonData: { token: event.target.value } });
  };
  const onResetToken = () => {
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, token: false },
      secureJsonData: { ...secureJsonData, token: '' },
    });
  };

  return (
    <>
      <InlineField label="Hub URL" labelWidth={16} tooltip="The hub's HTTP API, as Grafana's server reaches it">
        <Input
          id="config-editor-url"
          value={jsonData.url ?? ''}
          onChange={onURLChange}
          placeholder="http://hub:9301"
          width={40}
        />
      </InlineField>
      <InlineField
        label="Bureau token"
        labelWidth={16}
        tooltip="The bureau's bearer token (a cross_bureau token reads every bureau). Stored encrypted, sent only to the backend."
      >
        <SecretInput
          id="config-editor-token"
          isConfigured={!!secureJsonFields?.token}
          value={secureJsonData?.token ?? ''}
          placeholder="token"
          width={40}
          onReset={onResetToken}
          onChange={onTokenChange}
        />
      </InlineField>
    </>
  );
}
