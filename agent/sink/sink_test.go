package sink_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/agent/sink"
)

// fakeQueue records appends. After failAfter successful appends (when
// failAfter >= 0) every Append fails with errFull.
type fakeQueue struct {
	failAfter int
	appends   []appended
	calls     int
}

type appended struct {
	payload []byte
	samples int
}

var errFull = errors.New("buffer full")

func newFakeQueue() *fakeQueue { return &fakeQueue{failAfter: -1} }

func (q *fakeQueue) Append(payload []byte, samples int) (uint64, error) {
	q.calls++
	if q.failAfter >= 0 && len(q.appends) >= q.failAfter {
		return 0, errFull
	}
	// The sink reuses its buffers, so keep a copy.
	q.appends = append(q.appends, appended{payload: slices.Clone(payload), samples: samples})
	return uint64(len(q.appends)), nil
}

var testID = sink.Identity{Bureau: "b1", Cloud: "aws", Cluster: "c1", Instance: "i1"}

func newSink(tb testing.TB, q sink.Queue, maxBatch int) (*sink.Sink, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	s, err := sink.New(q, testID, maxBatch, reg)
	if err != nil {
		tb.Fatalf("sink.New: %v", err)
	}
	return s, reg
}

func decode(tb testing.TB, payload []byte) prompb.WriteRequest {
	tb.Helper()
	raw, err := snappy.Decode(nil, payload)
	if err != nil {
		tb.Fatalf("snappy: %v", err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		tb.Fatalf("unmarshal: %v", err)
	}
	return wr
}

// lbls builds labels from name, value pairs.
func lbls(nv ...string) []prompb.Label {
	ls := make([]prompb.Label, 0, len(nv)/2)
	for i := 0; i < len(nv); i += 2 {
		ls = append(ls, prompb.Label{Name: nv[i], Value: nv[i+1]})
	}
	return ls
}

func labelString(ls []prompb.Label) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%s=%q", l.Name, l.Value)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func TestWriteIdentityLabels(t *testing.T) {
	tests := []struct {
		name string
		in   []prompb.Label
		want []prompb.Label
	}{
		{
			name: "all identity labels added",
			in:   lbls("__name__", "up", "job", "x"),
			want: lbls("__name__", "up", "bureau", "b1", "cloud", "aws", "cluster", "c1", "instance", "i1", "job", "x"),
		},
		{
			name: "bureau overridden",
			in:   lbls("__name__", "up", "bureau", "other"),
			want: lbls("__name__", "up", "bureau", "b1", "cloud", "aws", "cluster", "c1", "instance", "i1"),
		},
		{
			name: "own cloud, cluster and instance kept",
			in:   lbls("__name__", "up", "cloud", "gcp", "cluster", "k8s", "instance", "node-7:9100"),
			want: lbls("__name__", "up", "bureau", "b1", "cloud", "gcp", "cluster", "k8s", "instance", "node-7:9100"),
		},
		{
			name: "only instance kept",
			in:   lbls("__name__", "up", "instance", "host:1"),
			want: lbls("__name__", "up", "bureau", "b1", "cloud", "aws", "cluster", "c1", "instance", "host:1"),
		},
		{
			name: "empty values count as absent",
			in:   lbls("__name__", "up", "cloud", "", "instance", ""),
			want: lbls("__name__", "up", "bureau", "b1", "cloud", "aws", "cluster", "c1", "instance", "i1"),
		},
		{
			name: "unsorted input sorted",
			in:   lbls("zone", "z", "job", "x", "__name__", "up", "a", "1"),
			want: lbls("__name__", "up", "a", "1", "bureau", "b1", "cloud", "aws", "cluster", "c1", "instance", "i1", "job", "x", "zone", "z"),
		},
		{
			name: "no labels at all",
			in:   nil,
			want: lbls("bureau", "b1", "cloud", "aws", "cluster", "c1", "instance", "i1"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFakeQueue()
			s, _ := newSink(t, q, 100)
			in := []prompb.TimeSeries{{Labels: tt.in, Samples: []prompb.Sample{{Timestamp: 1, Value: 2}}}}
			if err := s.Write("test", in); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if len(q.appends) != 1 {
				t.Fatalf("%d appends, want 1", len(q.appends))
			}
			wr := decode(t, q.appends[0].payload)
			if len(wr.Timeseries) != 1 {
				t.Fatalf("%d series in payload, want 1", len(wr.Timeseries))
			}
			if got, want := labelString(wr.Timeseries[0].Labels), labelString(tt.want); got != want {
				t.Errorf("labels = %s\nwant     %s", got, want)
			}
		})
	}
}

func TestWriteBatches(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		samples  []int // per series
		want     []int // samples per Append
	}{
		{name: "one sample per series, splits evenly", maxBatch: 3, samples: []int{1, 1, 1, 1, 1, 1}, want: []int{3, 3}},
		{name: "one sample per series, remainder", maxBatch: 3, samples: []int{1, 1, 1, 1, 1, 1, 1}, want: []int{3, 3, 1}},
		{name: "fits in one batch", maxBatch: 10, samples: []int{2, 2, 2}, want: []int{6}},
		{name: "exactly one batch", maxBatch: 6, samples: []int{2, 2, 2}, want: []int{6}},
		// A batch closes at the series that reaches the threshold; series
		// are never split, so a batch may exceed it by less than a series.
		{name: "series reaching the threshold closes the batch", maxBatch: 4, samples: []int{3, 3, 3}, want: []int{6, 3}},
		{name: "one series larger than a batch", maxBatch: 2, samples: []int{5, 1}, want: []int{5, 1}},
		{name: "series without samples are left out", maxBatch: 2, samples: []int{0, 1, 0, 1, 0}, want: []int{2}},
		{name: "only empty series", maxBatch: 2, samples: []int{0, 0}, want: nil},
		{name: "nothing", maxBatch: 2, samples: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFakeQueue()
			s, reg := newSink(t, q, tt.maxBatch)
			var in, orig []prompb.TimeSeries
			for i, n := range tt.samples {
				ts := prompb.TimeSeries{Labels: lbls("__name__", "m", "i", fmt.Sprint(i))}
				for j := range n {
					ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: int64(1000*i + j), Value: float64(j)})
				}
				in = append(in, ts)
				orig = append(orig, prompb.TimeSeries{Labels: slices.Clone(ts.Labels), Samples: slices.Clone(ts.Samples)})
			}
			if err := s.Write("scrape", in); err != nil {
				t.Fatalf("Write: %v", err)
			}
			var got []int
			var out []prompb.TimeSeries
			for i, a := range q.appends {
				got = append(got, a.samples)
				wr := decode(t, a.payload)
				n := 0
				for _, ts := range wr.Timeseries {
					n += len(ts.Samples)
				}
				if n != a.samples {
					t.Errorf("append %d: payload holds %d samples, Append was told %d", i, n, a.samples)
				}
				out = append(out, wr.Timeseries...)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("samples per Append = %v, want %v", got, tt.want)
			}
			// Together the batches hold every series with samples, in
			// order, with their samples.
			var want []prompb.TimeSeries
			for _, ts := range orig {
				if len(ts.Samples) > 0 {
					want = append(want, ts)
				}
			}
			var outNonEmpty []prompb.TimeSeries
			for _, ts := range out {
				if len(ts.Samples) > 0 {
					outNonEmpty = append(outNonEmpty, ts)
				}
			}
			if len(outNonEmpty) != len(want) {
				t.Fatalf("payloads hold %d series with samples, want %d", len(outNonEmpty), len(want))
			}
			for i := range want {
				if got := outNonEmpty[i]; got.Labels[0].Value != "m" || !hasLabel(got.Labels, "i", want[i].Labels[1].Value) ||
					!sameSamples(got.Samples, want[i].Samples) {
					t.Errorf("series %d = %s %v, want i=%s %v", i, labelString(got.Labels), got.Samples, want[i].Labels[1].Value, want[i].Samples)
				}
			}
			total := 0
			for _, n := range tt.want {
				total += n
			}
			wantMetrics := fmt.Sprintf(`
# HELP bureauhub_agent_collected_batches_total Batches written to the durable buffer, by source.
# TYPE bureauhub_agent_collected_batches_total counter
bureauhub_agent_collected_batches_total{source="scrape"} %d
# HELP bureauhub_agent_collected_samples_total Samples written to the durable buffer, by source.
# TYPE bureauhub_agent_collected_samples_total counter
bureauhub_agent_collected_samples_total{source="scrape"} %d
`, len(tt.want), total)
			if len(tt.want) == 0 {
				wantMetrics = ""
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetrics),
				"bureauhub_agent_collected_batches_total", "bureauhub_agent_collected_samples_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

func sameSamples(a, b []prompb.Sample) bool {
	return slices.EqualFunc(a, b, func(x, y prompb.Sample) bool { return x.Timestamp == y.Timestamp && x.Value == y.Value })
}

func hasLabel(ls []prompb.Label, name, value string) bool {
	for _, l := range ls {
		if l.Name == name {
			return l.Value == value
		}
	}
	return false
}

func TestWriteDropsHistogramsAndExemplars(t *testing.T) {
	q := newFakeQueue()
	s, reg := newSink(t, q, 100)
	h := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 3}, Timestamp: 5}
	in := []prompb.TimeSeries{
		{Labels: lbls("__name__", "native"), Histograms: []prompb.Histogram{h, h, h}},
		{Labels: lbls("__name__", "mixed"), Histograms: []prompb.Histogram{h}, Samples: []prompb.Sample{{Timestamp: 5, Value: 1}},
			Exemplars: []prompb.Exemplar{{Labels: lbls("trace_id", "abc"), Value: 1, Timestamp: 5}}},
		{Labels: lbls("__name__", "plain"), Samples: []prompb.Sample{{Timestamp: 5, Value: 2}}},
	}
	if err := s.Write("remote_write", in); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if len(q.appends) != 1 || q.appends[0].samples != 2 {
		t.Fatalf("appends = %d, want one of 2 samples", len(q.appends))
	}
	for _, ts := range decode(t, q.appends[0].payload).Timeseries {
		if len(ts.Histograms) != 0 || len(ts.Exemplars) != 0 {
			t.Errorf("series %s kept %d histograms and %d exemplars", labelString(ts.Labels), len(ts.Histograms), len(ts.Exemplars))
		}
	}
	want := `
# HELP bureauhub_agent_unsupported_samples_total Samples not kept, by source and reason: native_histogram (the hub cannot store them; exemplars are not forwarded either), duplicate_series (a series exposed twice in one scrape: the first is kept).
# TYPE bureauhub_agent_unsupported_samples_total counter
bureauhub_agent_unsupported_samples_total{reason="native_histogram",source="remote_write"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bureauhub_agent_unsupported_samples_total"); err != nil {
		t.Error(err)
	}
}

func TestWriteHistogramsOnlyAppendsNothing(t *testing.T) {
	q := newFakeQueue()
	s, _ := newSink(t, q, 100)
	h := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 3}, Timestamp: 5}
	if err := s.Write("remote_write", []prompb.TimeSeries{{Labels: lbls("__name__", "native"), Histograms: []prompb.Histogram{h}}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if q.calls != 0 {
		t.Errorf("%d appends for histograms only, want 0", q.calls)
	}
}

func TestWriteAppendError(t *testing.T) {
	tests := []struct {
		name      string
		failAfter int
		wantCalls int
		wantKept  int // samples counted as collected
	}{
		{name: "first batch fails", failAfter: 0, wantCalls: 1, wantKept: 0},
		{name: "second batch fails", failAfter: 1, wantCalls: 2, wantKept: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFakeQueue()
			q.failAfter = tt.failAfter
			s, reg := newSink(t, q, 2)
			var in []prompb.TimeSeries
			for i := range 6 {
				in = append(in, prompb.TimeSeries{Labels: lbls("__name__", "m", "i", fmt.Sprint(i)), Samples: []prompb.Sample{{Timestamp: 1, Value: 1}}})
			}
			err := s.Write("scrape", in)
			if !errors.Is(err, errFull) {
				t.Fatalf("Write = %v, want it to wrap %v", err, errFull)
			}
			if q.calls != tt.wantCalls {
				t.Errorf("Append called %d times, want %d: Write must stop at the first failure", q.calls, tt.wantCalls)
			}
			want := ""
			if tt.wantKept > 0 {
				want = fmt.Sprintf(`
# HELP bureauhub_agent_collected_samples_total Samples written to the durable buffer, by source.
# TYPE bureauhub_agent_collected_samples_total counter
bureauhub_agent_collected_samples_total{source="scrape"} %d
`, tt.wantKept)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bureauhub_agent_collected_samples_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, n := range []int{0, -1} {
		if _, err := sink.New(newFakeQueue(), testID, n, nil); err == nil {
			t.Errorf("New with max batch %d succeeded", n)
		}
	}
	if _, err := sink.New(newFakeQueue(), testID, 1, nil); err != nil {
		t.Errorf("New with a nil registerer: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := sink.New(newFakeQueue(), testID, 1, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.New(newFakeQueue(), testID, 1, reg); err == nil {
		t.Error("a second sink on one registry registered its metrics twice without error")
	}
}

func TestIdentityValidate(t *testing.T) {
	tests := []struct {
		name  string
		id    sink.Identity
		field string
	}{
		{name: "complete", id: testID},
		{name: "no bureau", id: sink.Identity{Cloud: "a", Cluster: "b", Instance: "c"}, field: "identity.bureau"},
		{name: "no cloud", id: sink.Identity{Bureau: "a", Cluster: "b", Instance: "c"}, field: "identity.cloud"},
		{name: "no cluster", id: sink.Identity{Bureau: "a", Cloud: "b", Instance: "c"}, field: "identity.cluster"},
		{name: "no instance", id: sink.Identity{Bureau: "a", Cloud: "b", Cluster: "c"}, field: "identity.instance"},
		{name: "newline", id: sink.Identity{Bureau: "a", Cloud: "b", Cluster: "c\nd", Instance: "e"}, field: "identity.cluster"},
		{name: "NUL", id: sink.Identity{Bureau: "a\x00", Cloud: "b", Cluster: "c", Instance: "e"}, field: "identity.bureau"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.id.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("Validate = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

// TestBatchAdd checks the scrape path: series added one sample at a time
// from Prometheus labels make records byte for byte equal to the
// generated WriteRequest.Marshal of the labeled series, split at
// maxBatch, and nothing reaches the buffer before Commit or after Discard.
func TestBatchAdd(t *testing.T) {
	q := newFakeQueue()
	s, reg := newSink(t, q, 3)
	b := s.NewBatch("scrape")
	var want []prompb.TimeSeries
	for i := range 7 {
		ls := labels.FromStrings("__name__", "m", "cloud", "own", "i", fmt.Sprint(i))
		b.Add(ls, int64(i), float64(i)/3)
		want = append(want, prompb.TimeSeries{
			Labels:  lbls("__name__", "m", "bureau", "b1", "cloud", "own", "cluster", "c1", "i", fmt.Sprint(i), "instance", "i1"),
			Samples: []prompb.Sample{{Timestamp: int64(i), Value: float64(i) / 3}},
		})
	}
	if q.calls != 0 {
		t.Fatalf("%d appends before Commit, want 0", q.calls)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(q.appends) != 3 {
		t.Fatalf("%d records, want 3 (3+3+1 samples)", len(q.appends))
	}
	for i, a := range q.appends {
		lo, hi := 3*i, min(3*i+3, len(want))
		wr := prompb.WriteRequest{Timeseries: want[lo:hi]}
		wantRaw, err := wr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := snappy.Decode(nil, a.payload)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, wantRaw) || a.samples != hi-lo {
			t.Errorf("record %d (%d samples) differs from WriteRequest.Marshal of series %d-%d", i, a.samples, lo, hi-1)
		}
	}
	if err := b.Commit(); err == nil {
		t.Error("a second Commit succeeded")
	}

	d := s.NewBatch("scrape")
	d.Add(labels.FromStrings("__name__", "dropped"), 1, 1)
	d.Discard()
	if len(q.appends) != 3 {
		t.Errorf("a discarded batch appended: %d records", len(q.appends))
	}
	want2 := `
# HELP bureauhub_agent_collected_samples_total Samples written to the durable buffer, by source.
# TYPE bureauhub_agent_collected_samples_total counter
bureauhub_agent_collected_samples_total{source="scrape"} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want2), "bureauhub_agent_collected_samples_total"); err != nil {
		t.Error(err)
	}
}
