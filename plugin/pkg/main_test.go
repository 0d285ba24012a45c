package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
	"github.com/bureauhub/bureauhub/plugin/internal/hubtest"
	"github.com/bureauhub/bureauhub/plugin/pkg/plugin"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// syncBuffer collects the plugin's log lines, written by go-plugin's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// grafana starts the plugin binary as Grafana's plugin host does: a
// go-plugin client with the SDK's handshake, gRPC only, protocol 2, and
// the plugin sets Grafana dispenses.
type grafana struct {
	diagnostics pluginv2.DiagnosticsClient
	data        pluginv2.DataClient
	resource    pluginv2.ResourceClient
	log         *syncBuffer
}

func startPlugin(t *testing.T, bin string) *grafana {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(bin)
	cmd.Env = append(cmd.Environ(), "GF_PLUGIN_LOG_LEVEL=debug", "GF_VERSION=13.2.2", "GF_EDITION=oss")
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  grpcplugin.ProtocolVersion,
			MagicCookieKey:   grpcplugin.MagicCookieKey,
			MagicCookieValue: grpcplugin.MagicCookieValue,
		},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"data":        &grpcplugin.DataGRPCPlugin{},
			"resource":    &grpcplugin.ResourceGRPCPlugin{},
		}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: logs, Level: hclog.Trace}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin: %v\n%s", err, logs)
	}
	g := &grafana{log: logs}
	for name, dst := range map[string]any{"diagnostics": &g.diagnostics, "data": &g.data, "resource": &g.resource} {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		switch d := dst.(type) {
		case *pluginv2.DiagnosticsClient:
			*d = raw.(pluginv2.DiagnosticsClient)
		case *pluginv2.DataClient:
			*d = raw.(pluginv2.DataClient)
		case *pluginv2.ResourceClient:
			*d = raw.(pluginv2.ResourceClient)
		}
	}
	return g
}

// pluginContext is what Grafana sends with every call for a data source
// instance: its settings, the secure ones decrypted.
// instanceID gives each token its own data source instance, as Grafana
// does for each configured data source: the SDK caches instances by ID and
// settings update time, so two tokens under one ID within the same
// millisecond would share the first one's instance.
func instanceID(token string) int64 { return 100 + int64(crc32.ChecksumIEEE([]byte(token))%100000) }

func pluginContext(id int64, url, token string) *pluginv2.PluginContext {
	js, _ := json.Marshal(map[string]string{"url": url})
	return &pluginv2.PluginContext{
		OrgId:    1,
		PluginId: plugin.ID,
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Id: id, Uid: fmt.Sprintf("hub-%d", id), Name: "bureauhub", JsonData: js,
			DecryptedSecureJsonData: map[string]string{"token": token},
			LastUpdatedMS:           time.Now().UnixMilli(),
		},
	}
}

// buildPlugin compiles this package as Grafana expects the executable
// named: gpx_hub_<os>_<arch>.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), fmt.Sprintf("gpx_hub_%s_%s", runtime.GOOS, runtime.GOARCH))
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestPluginOverGRPC runs the built plugin binary the way Grafana runs
// it and calls CheckHealth, QueryData and CallResource over gRPC against
// a real hub.
func TestPluginOverGRPC(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	now := time.Now().Truncate(time.Second)
	from := now.Add(-5 * time.Minute)
	for i, b := range []string{"consular", "health"} {
		v := float64(10 * (i + 1))
		h.Push(t, b,
			hubtest.Every(hubtest.Series("up", "job", "app", "instance", b+"-vm-1"), from, now, 15*time.Second, func(time.Time) float64 { return 1 }),
			hubtest.Every(hubtest.Series("grpc_test_metric", "job", "app"), from, now, 15*time.Second, func(time.Time) float64 { return v }),
		)
	}
	g := startPlugin(t, buildPlugin(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port, err := e2e.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://127.0.0.1:%d", port)

	t.Run("CheckHealth", func(t *testing.T) {
		for i, c := range []struct {
			url, token string
			status     pluginv2.CheckHealthResponse_HealthStatus
			want       string
		}{
			{h.URL, hubtest.Token(hubtest.CrossBureau), pluginv2.CheckHealthResponse_OK, "sees bureaus consular, health"},
			{h.URL, hubtest.Token("consular"), pluginv2.CheckHealthResponse_OK, "sees bureau consular"},
			{h.URL, hubtest.Token("transport"), pluginv2.CheckHealthResponse_ERROR, "sees no data"},
			{h.URL, "wrong-token-0123456789", pluginv2.CheckHealthResponse_ERROR, "401"},
			{dead, hubtest.Token("health"), pluginv2.CheckHealthResponse_ERROR, "Hub unreachable at " + dead},
		} {
			r, err := g.diagnostics.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: pluginContext(int64(i+1), c.url, c.token)})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != c.status || !strings.Contains(r.Message, c.want) {
				t.Errorf("%s as %q: %v %q, want %v containing %q", c.url, c.token, r.Status, r.Message, c.status, c.want)
			}
		}
	})

	t.Run("QueryData", func(t *testing.T) {
		query := func(token string, q plugin.Query) *pluginv2.DataResponse {
			js, _ := json.Marshal(q)
			resp, err := g.data.QueryData(ctx, &pluginv2.QueryDataRequest{
				PluginContext: pluginContext(instanceID(token), h.URL, token),
				Queries: []*pluginv2.DataQuery{{
					RefId: "A", QueryType: plugin.QueryTypePromQL, Json: js, IntervalMS: 15000, MaxDataPoints: 500,
					TimeRange: &pluginv2.TimeRange{FromEpochMS: from.UnixMilli(), ToEpochMS: now.UnixMilli()},
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			return resp.Responses["A"]
		}
		sums := func(r *pluginv2.DataResponse) string {
			if r.Error != "" {
				t.Fatalf("query error: %s", r.Error)
			}
			fs, err := data.UnmarshalArrowFrames(r.Frames)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, f := range fs {
				if f.Rows() == 0 {
					continue
				}
				v, _ := f.Fields[1].ConcreteAt(f.Rows() - 1)
				out = append(out, fmt.Sprintf("%s=%v", f.Fields[1].Labels["bureau"], v))
			}
			return strings.Join(out, " ")
		}
		for _, c := range []struct {
			name, token string
			q           plugin.Query
			want        string
		}{
			{"cross-bureau", hubtest.Token(hubtest.CrossBureau), plugin.Query{Expr: "sum by (bureau) (grpc_test_metric)"}, "consular=10 health=20"},
			{"cross-bureau restricted", hubtest.Token(hubtest.CrossBureau), plugin.Query{Expr: "sum by (bureau) (grpc_test_metric)", Bureaus: []string{"health"}}, "health=20"},
			{"bureau token", hubtest.Token("consular"), plugin.Query{Expr: "sum by (bureau) (grpc_test_metric)"}, "consular=10"},
			{"bureau token asking for another", hubtest.Token("consular"), plugin.Query{Expr: "grpc_test_metric", Bureaus: []string{"health"}}, ""},
		} {
			if got := sums(query(c.token, c.q)); got != c.want {
				t.Errorf("%s: %q, want %q", c.name, got, c.want)
			}
		}
		if r := query("wrong-token-0123456789", plugin.Query{Expr: "up"}); !strings.Contains(r.Error, "401") {
			t.Errorf("bad token: error %q, want the hub's 401", r.Error)
		}
	})

	t.Run("CallResource", func(t *testing.T) {
		stream, err := g.resource.CallResource(ctx, &pluginv2.CallResourceRequest{
			PluginContext: pluginContext(instanceID(hubtest.Token(hubtest.CrossBureau)), h.URL, hubtest.Token(hubtest.CrossBureau)), Path: "bureaus", Method: "GET", Url: "bureaus",
		})
		if err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 200 || string(r.Body) != `["consular","health"]` {
			t.Fatalf("bureaus: %d %s", r.Code, r.Body)
		}
	})

	// The token never reaches the plugin's log.
	if l := g.log.String(); strings.Contains(l, "token-0123456789") {
		t.Errorf("the plugin logged a token:\n%s", l)
	}
}
