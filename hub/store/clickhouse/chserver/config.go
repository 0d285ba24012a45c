package chserver

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
)

// Paths inside Options.Dir. The data path also identifies our server: the
// readiness check compares it with what the server reports, so that a stranger
// answering on a port we lost a race for is never mistaken for our server.
const (
	configFile   = "config.xml"
	usersFile    = "users.xml"
	dataDir      = "data"
	logDir       = "log"
	errorLogFile = "clickhouse-server.err.log"
)

// configTemplate is the smallest config that ClickHouse 18.16 runs with, in
// the <yandex> root element that 18.16 requires and current versions still
// accept. It deliberately leaves out the interserver port (needed only for
// replication), remote_servers, zookeeper, query_log and dictionaries, and it
// sets no max_server_memory_usage, which 18.16 does not know.
var configTemplate = template.Must(template.New(configFile).Funcs(template.FuncMap{"x": xmlText}).Parse(`<?xml version="1.0"?>
<!-- Written by chserver for a throwaway test server; rewritten on every start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>{{x .LogDir}}/clickhouse-server.log</log>
        <errorlog>{{x .LogDir}}/` + errorLogFile + `</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>

    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{{.TCPPort}}</tcp_port>
    <http_port>{{.HTTPPort}}</http_port>

    <path>{{x .DataDir}}/</path>
    <tmp_path>{{x .Dir}}/tmp/</tmp_path>
    <user_files_path>{{x .Dir}}/user_files/</user_files_path>
    <format_schema_path>{{x .Dir}}/format_schemas/</format_schema_path>
    <users_config>` + usersFile + `</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>

    <!-- Fixed so that toYYYYMMDD and friends partition the same on every machine. -->
    <timezone>UTC</timezone>

    <!-- Caches fill on demand; small limits keep an idle test server small. -->
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>

    <!-- Tests and demos drop tables and partitions of any size. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
`))

const usersXML = `<?xml version="1.0"?>
<!-- Written by chserver for a throwaway test server; rewritten on every start. -->
<yandex>
    <profiles>
        <default>
            <!-- An idle native connection notices shutdown only between
                 polls: at the default 10s, one open clickhouse-go pool makes
                 every Stop take 10s. -->
            <poll_interval>1</poll_interval>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`

// writeConfig writes config.xml and users.xml into dir and creates the log
// directory, returning the path of config.xml.
func writeConfig(dir string, tcpPort, httpPort int) (string, error) {
	var buf bytes.Buffer
	err := configTemplate.Execute(&buf, struct {
		Dir, DataDir, LogDir string
		TCPPort, HTTPPort    int
	}{
		Dir:      dir,
		DataDir:  filepath.Join(dir, dataDir),
		LogDir:   filepath.Join(dir, logDir),
		TCPPort:  tcpPort,
		HTTPPort: httpPort,
	})
	if err != nil {
		return "", fmt.Errorf("render %s: %w", configFile, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, logDir), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, configFile)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, usersFile), []byte(usersXML), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

func xmlText(s string) (string, error) {
	var b bytes.Buffer
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}
