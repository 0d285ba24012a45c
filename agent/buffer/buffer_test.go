package buffer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// smallConfig makes segments roll every few records.
func smallConfig(dir string) Config {
	return Config{Dir: dir, SegmentBytes: 4096, MaxBytes: 1 << 20}
}

// openQueue opens a queue with its own registry and closes it on cleanup.
func openQueue(tb testing.TB, cfg Config, logger *slog.Logger) (*Queue, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	q, err := Open(cfg, logger, reg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := q.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return q, reg
}

// payloadFor and samplesFor derive a record's content from its seq, so that
// any process can check any record.
func payloadFor(seq uint64) []byte {
	p := make([]byte, 1+(seq*7919)%900)
	for i := range p {
		p[i] = byte(seq*31 + uint64(i))
	}
	return p
}

func samplesFor(seq uint64) int { return int(seq%50) + 1 }

// appendN appends n records made by payloadFor; the caller must be the only
// appender.
func appendN(tb testing.TB, q *Queue, n int) {
	tb.Helper()
	for range n {
		want := q.Stats().LastSeq + 1
		seq, err := q.Append(payloadFor(want), samplesFor(want))
		if err != nil {
			tb.Fatalf("Append: %v", err)
		}
		if seq != want {
			tb.Fatalf("Append returned seq %d, want %d", seq, want)
		}
	}
}

// readUntil reads records after `after` until it has read seq last.
func readUntil(tb testing.TB, q *Queue, after, last uint64) []Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []Record
	for after < last {
		rec, err := q.Next(ctx, after)
		if err != nil {
			tb.Fatalf("Next(%d): %v", after, err)
		}
		recs = append(recs, rec)
		after = rec.Seq
	}
	return recs
}

// checkRecords checks that recs are exactly seqs first..last with the
// content appendN gave them.
func checkRecords(tb testing.TB, recs []Record, first, last uint64) {
	tb.Helper()
	if uint64(len(recs)) != last-first+1 {
		tb.Fatalf("got %d records, want seqs %d..%d", len(recs), first, last)
	}
	for i, r := range recs {
		want := first + uint64(i)
		if r.Seq != want || r.Samples != samplesFor(want) || !bytes.Equal(r.Payload, payloadFor(want)) {
			tb.Fatalf("record %d: got seq %d samples %d len %d, want seq %d samples %d len %d",
				i, r.Seq, r.Samples, len(r.Payload), want, samplesFor(want), len(payloadFor(want)))
		}
	}
}

func segmentFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func diskBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	for _, f := range segmentFiles(tb, dir) {
		fi, err := os.Stat(f)
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func sumSamples(from, to uint64) int64 {
	var n int64
	for s := from; s <= to; s++ {
		n += int64(samplesFor(s))
	}
	return n
}

func TestConfigValidate(t *testing.T) {
	withDefaults := func(c Config) Config { c.SetDefaults(); return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty for valid
	}{
		{name: "defaults", cfg: withDefaults(Config{Dir: "d"})},
		{name: "periodic fsync disabled", cfg: withDefaults(Config{Dir: "d", FsyncInterval: -1})},
		{name: "empty dir", cfg: withDefaults(Config{}), wantErr: "buffer.dir: must not be empty"},
		{name: "tiny segments", cfg: withDefaults(Config{Dir: "d", SegmentBytes: 100}), wantErr: "buffer.segment_bytes: must be at least 4096"},
		{name: "huge segments", cfg: withDefaults(Config{Dir: "d", SegmentBytes: 2 << 30, MaxBytes: 8 << 30}), wantErr: "buffer.segment_bytes: must be at most"},
		{name: "max below two segments", cfg: Config{Dir: "d", SegmentBytes: 8192, MaxBytes: 10000}, wantErr: "buffer.max_bytes: must be at least 2*segment_bytes"},
		{name: "zero config", cfg: Config{}, wantErr: "buffer.segment_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSetDefaults(t *testing.T) {
	c := Config{Dir: "d", FsyncInterval: -1}
	c.SetDefaults()
	want := Config{Dir: "d", MaxBytes: defaultMaxBytes, SegmentBytes: defaultSegmentBytes, FsyncInterval: -1}
	if c != want {
		t.Fatalf("SetDefaults gave %+v, want %+v", c, want)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(dir string) Config
		n        int
		minFiles int
	}{
		{name: "many segment rolls", cfg: smallConfig, n: 300, minFiles: 10},
		{name: "one segment", cfg: func(dir string) Config { return Config{Dir: dir} }, n: 300, minFiles: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, reg := openQueue(t, tt.cfg(dir), nil)
			start := time.Now().Truncate(time.Millisecond)
			appendN(t, q, tt.n)
			last := uint64(tt.n)
			if files := segmentFiles(t, dir); len(files) < tt.minFiles {
				t.Fatalf("got %d segment files, want at least %d", len(files), tt.minFiles)
			}
			if got := diskBytes(t, dir); got != q.Stats().Bytes {
				t.Fatalf("Stats.Bytes = %d, files hold %d", q.Stats().Bytes, got)
			}

			recs := readUntil(t, q, 0, last)
			checkRecords(t, recs, 1, last)
			if a := recs[0].Appended; a.Before(start) || a.After(time.Now()) {
				t.Fatalf("Appended = %v, want between %v and now", a, start)
			}
			st := q.Stats()
			if st.Records != tt.n || st.Samples != sumSamples(1, last) || st.OldestUnacked != recs[0].Appended {
				t.Fatalf("Stats = %+v, want %d records, %d samples, oldest %v", st, tt.n, sumSamples(1, last), recs[0].Appended)
			}

			half := last / 2
			if err := q.Ack(half); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			st = q.Stats()
			if st.Acked != half || st.Records != int(last-half) || st.Samples != sumSamples(half+1, last) || st.OldestUnacked != recs[half].Appended {
				t.Fatalf("after Ack(%d): Stats = %+v", half, st)
			}
			if rec, err := q.Next(context.Background(), 0); err != nil || rec.Seq != half+1 {
				t.Fatalf("Next(0) after Ack(%d) = seq %d, %v; want %d", half, rec.Seq, err, half+1)
			}
			if err := q.Ack(half - 1); err != nil {
				t.Fatalf("Ack below the acked seq: %v", err)
			}
			if err := q.Ack(last + 1); err == nil {
				t.Fatal("Ack beyond the last seq succeeded")
			}

			if err := q.Ack(last); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			st = q.Stats()
			if st.Records != 0 || st.Samples != 0 || !st.OldestUnacked.IsZero() || st.LastSeq != last {
				t.Fatalf("after acking everything: Stats = %+v", st)
			}
			if files := segmentFiles(t, dir); len(files) != 1 {
				t.Fatalf("after acking everything %d segment files remain, want only the active one", len(files))
			}
			if got, want := testutil.ToFloat64(q.m.ackedSamples), float64(sumSamples(1, last)); got != want {
				t.Fatalf("acked_samples_total = %v, want %v", got, want)
			}
			if got := testutil.ToFloat64(q.m.appendedRecords); got != float64(tt.n) {
				t.Fatalf("appended_records_total = %v, want %d", got, tt.n)
			}
			names := []string{"bytes", "records", "samples", "oldest_unacked_age_seconds",
				"appended_samples_total", "appended_records_total", "acked_samples_total",
				"dropped_samples_total", "dropped_records_total", "fsyncs_total"}
			for i := range names {
				names[i] = metricPrefix + names[i]
			}
			if n, err := testutil.GatherAndCount(reg, names...); err != nil || n != len(names) {
				t.Fatalf("GatherAndCount = %d, %v; want %d", n, err, len(names))
			}
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	const writers, perWriter = 8, 100
	q, _ := openQueue(t, smallConfig(t.TempDir()), nil)
	var (
		mu   sync.Mutex
		sent = map[uint64][]byte{}
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				p := fmt.Appendf(nil, "writer %d record %d", w, i)
				seq, err := q.Append(p, 1)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				sent[seq] = p
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(sent) != writers*perWriter {
		t.Fatalf("got %d distinct seqs, want %d", len(sent), writers*perWriter)
	}
	for i, r := range readUntil(t, q, 0, writers*perWriter) {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Payload, sent[r.Seq]) {
			t.Fatalf("record %d: seq %d payload %q, want seq %d payload %q", i, r.Seq, r.Payload, i+1, sent[r.Seq])
		}
	}
}

func TestReopen(t *testing.T) {
	tests := []struct {
		name     string
		appended int
		acked    uint64
	}{
		{name: "partly acked", appended: 50, acked: 20},
		{name: "nothing acked", appended: 50},
		// Reopening deletes the active segment once everything is acked;
		// the ack file alone keeps seqs from being reused.
		{name: "all acked", appended: 50, acked: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, _ := openQueue(t, smallConfig(dir), nil)
			appendN(t, q, tt.appended)
			if tt.acked > 0 {
				if err := q.Ack(tt.acked); err != nil {
					t.Fatalf("Ack: %v", err)
				}
			}
			id := q.ID()
			wantFiles := len(segmentFiles(t, dir))
			if tt.acked == uint64(tt.appended) {
				wantFiles = 0
			}
			if err := q.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := q.Append([]byte("x"), 1); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close = %v, want ErrClosed", err)
			}
			if _, err := q.Next(context.Background(), 0); !errors.Is(err, ErrClosed) {
				t.Fatalf("Next after Close = %v, want ErrClosed", err)
			}
			if err := q.Ack(1); !errors.Is(err, ErrClosed) {
				t.Fatalf("Ack after Close = %v, want ErrClosed", err)
			}

			q2, _ := openQueue(t, smallConfig(dir), nil)
			last := uint64(tt.appended)
			st := q2.Stats()
			if q2.ID() != id || st.Acked != tt.acked || st.LastSeq != last || st.Records != int(last-tt.acked) ||
				st.Samples != sumSamples(tt.acked+1, last) {
				t.Fatalf("after reopen: ID %s (was %s), Stats %+v", q2.ID(), id, st)
			}
			if got := len(segmentFiles(t, dir)); got != wantFiles {
				t.Fatalf("got %d segment files, want %d", got, wantFiles)
			}
			checkRecords(t, readUntil(t, q2, tt.acked, last), tt.acked+1, last)
			appendN(t, q2, 5) // checks that seqs continue
			checkRecords(t, readUntil(t, q2, last, last+5), last+1, last+5)
		})
	}
}

func TestOpenLocksDir(t *testing.T) {
	dir := t.TempDir()
	openQueue(t, smallConfig(dir), nil)
	if q, err := Open(smallConfig(dir), nil, nil); err == nil {
		q.Close()
		t.Fatal("second Open of a dir in use succeeded")
	}
}

const killChildEnv = "BUFFER_TEST_KILL_CHILD_DIR"

func killConfig(dir string) Config {
	return Config{Dir: dir, SegmentBytes: 8192, MaxBytes: 256 << 20}
}

// TestKillNine appends in a child process, SIGKILLs it mid-stream and checks
// that every record the child saw Append accept is still there.
func TestKillNine(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		runKillChild(t, dir)
		return
	}
	tests := []struct {
		name      string
		killAfter int // appends the child reports before it is killed
	}{
		{name: "first segment", killAfter: 1},
		{name: "after many segment rolls", killAfter: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, _ := openQueue(t, killConfig(dir), nil)
			appendN(t, q, 20)
			if err := q.Ack(10); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			id := q.ID()
			if err := q.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			reported := runAndKill(t, dir, tt.killAfter)

			q2, _ := openQueue(t, killConfig(dir), nil)
			st := q2.Stats()
			maxReported := slices.Max(reported)
			if q2.ID() != id || st.Acked != 10 || st.LastSeq < maxReported {
				t.Fatalf("after kill: ID %s (was %s), Stats %+v, child reported up to seq %d", q2.ID(), id, st, maxReported)
			}
			// All records after the ack, including any the child appended but
			// could not report before it died, are intact and none is acked.
			checkRecords(t, readUntil(t, q2, 0, st.LastSeq), 11, st.LastSeq)
			if seq, err := q2.Append([]byte("after the crash"), 1); err != nil || seq != st.LastSeq+1 {
				t.Fatalf("Append after reopen = %d, %v; want seq %d", seq, err, st.LastSeq+1)
			}
			t.Logf("child reported %d appends before SIGKILL, %d records stored", len(reported), st.LastSeq)
		})
	}
}

// runAndKill re-executes the test binary as a child appending to dir, kills
// it with SIGKILL once it has reported killAfter appends, and returns every
// seq it reported.
func runAndKill(tb testing.TB, dir string, killAfter int) []uint64 {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillNine$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var reported []uint64
	var other []string
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		seq, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			other = append(other, sc.Text())
			continue
		}
		reported = append(reported, seq)
		if len(reported) == killAfter && !killed {
			if err := cmd.Process.Kill(); err != nil {
				tb.Fatalf("kill child: %v", err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	var exitErr *exec.ExitError
	if !killed || !errors.As(werr, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		tb.Fatalf("child was not killed mid-stream (wait: %v)\nstdout: %s\nstderr: %s", werr, strings.Join(other, "\n"), stderr.String())
	}
	return reported
}

// runKillChild appends until it is killed, printing each accepted seq.
func runKillChild(t *testing.T, dir string) {
	q, err := Open(killConfig(dir), nil, nil)
	if err != nil {
		t.Fatalf("child Open: %v", err)
	}
	for range 100_000 {
		want := q.Stats().LastSeq + 1
		seq, err := q.Append(payloadFor(want), samplesFor(want))
		if err != nil || seq != want {
			t.Fatalf("child Append = %d, %v; want seq %d", seq, err, want)
		}
		fmt.Fprintln(os.Stdout, seq)
	}
	t.Fatal("child was not killed")
}

func TestTornTail(t *testing.T) {
	const n = 40
	recSize := int64(headerSize + len(payloadFor(n))) // size of the last record
	tests := []struct {
		name    string
		corrupt func(path string, size int64) error
		keep    uint64 // records left after reopen
	}{
		{name: "garbage appended", keep: n, corrupt: func(path string, _ int64) error {
			return appendFile(path, []byte("definitely not a record"))
		}},
		{name: "zeros appended", keep: n, corrupt: func(path string, _ int64) error {
			return appendFile(path, make([]byte, 4096))
		}},
		{name: "half of a next record appended", keep: n, corrupt: func(path string, _ int64) error {
			return appendFile(path, encodeRecord(nil, n+1, 1, 0, payloadFor(n+1))[:headerSize+3])
		}},
		{name: "last header cut", keep: n - 1, corrupt: func(path string, size int64) error {
			return os.Truncate(path, size-recSize+10)
		}},
		{name: "last payload cut", keep: n - 1, corrupt: func(path string, size int64) error {
			return os.Truncate(path, size-5)
		}},
		{name: "last payload byte flipped", keep: n - 1, corrupt: func(path string, size int64) error {
			return flipByte(path, size-1)
		}},
		{name: "last seq flipped", keep: n - 1, corrupt: func(path string, size int64) error {
			return flipByte(path, size-recSize+12)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, _ := openQueue(t, smallConfig(dir), nil)
			appendN(t, q, n)
			if err := q.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			files := segmentFiles(t, dir)
			last := files[len(files)-1]
			fi, err := os.Stat(last)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.corrupt(last, fi.Size()); err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			q2, _ := openQueue(t, smallConfig(dir), slog.New(slog.NewTextHandler(&logs, nil)))
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "torn") {
				t.Errorf("no warning about the torn tail, logs: %s", logs.String())
			}
			if st := q2.Stats(); st.LastSeq != tt.keep || st.Bytes != diskBytes(t, dir) {
				t.Fatalf("after reopen: Stats %+v, want LastSeq %d and Bytes %d", st, tt.keep, diskBytes(t, dir))
			}
			checkRecords(t, readUntil(t, q2, 0, tt.keep), 1, tt.keep)
			appendN(t, q2, 3)
			checkRecords(t, readUntil(t, q2, tt.keep, tt.keep+3), tt.keep+1, tt.keep+3)
		})
	}
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		return errors.Join(err, f.Close())
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	return errors.Join(err, f.Close())
}

func TestSizeBound(t *testing.T) {
	tests := []struct {
		name   string
		before int    // records appended before the ack
		ack    uint64 // 0 for none
		after  int    // records appended after the ack
	}{
		{name: "nothing acked", before: 150},
		// Segments hold 12 records: 1-12 is deleted by the ack, 13-24 is
		// partly acked when it is dropped.
		{name: "partly acked segment dropped", before: 30, ack: 20, after: 120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir, SegmentBytes: 4096, MaxBytes: 3 * 4096}
			q, _ := openQueue(t, cfg, nil)
			appendBounded := func(n int) {
				for range n {
					seq := q.Stats().LastSeq + 1
					p := bytes.Repeat([]byte{byte(seq)}, 300)
					if _, err := q.Append(p, samplesFor(seq)); err != nil {
						t.Fatalf("Append: %v", err)
					}
					if b := q.Stats().Bytes; b > cfg.MaxBytes {
						t.Fatalf("Stats.Bytes = %d after seq %d, above MaxBytes %d", b, seq, cfg.MaxBytes)
					}
				}
			}
			appendBounded(tt.before)
			if tt.ack > 0 {
				if err := q.Ack(tt.ack); err != nil {
					t.Fatalf("Ack: %v", err)
				}
			}
			appendBounded(tt.after)
			last := uint64(tt.before + tt.after)

			kept := readUntil(t, q, 0, last)
			first := kept[0].Seq
			if first <= tt.ack+1 {
				t.Fatalf("nothing was dropped: first stored seq %d", first)
			}
			for i, r := range kept {
				if r.Seq != first+uint64(i) || !bytes.Equal(r.Payload, bytes.Repeat([]byte{byte(r.Seq)}, 300)) {
					t.Fatalf("record %d: seq %d, want %d with intact payload", i, r.Seq, first+uint64(i))
				}
			}
			// Dropped: the unacked seqs before the first one kept.
			wantRecords, wantSamples := float64(first-tt.ack-1), float64(sumSamples(tt.ack+1, first-1))
			if got := testutil.ToFloat64(q.m.droppedRecords); got != wantRecords {
				t.Errorf("dropped_records_total = %v, want %v", got, wantRecords)
			}
			if got := testutil.ToFloat64(q.m.droppedSamples); got != wantSamples {
				t.Errorf("dropped_samples_total = %v, want %v", got, wantSamples)
			}
			st := q.Stats()
			if st.Records != len(kept) || st.Samples != sumSamples(first, last) || st.OldestUnacked != kept[0].Appended {
				t.Errorf("Stats = %+v, want %d records, %d samples", st, len(kept), sumSamples(first, last))
			}
			if d := diskBytes(t, dir); d > cfg.MaxBytes || d != st.Bytes {
				t.Errorf("segment files hold %d bytes, Stats.Bytes %d, MaxBytes %d", d, st.Bytes, cfg.MaxBytes)
			}
		})
	}
}

func TestAppendTooLarge(t *testing.T) {
	cfg := smallConfig(t.TempDir())
	q, _ := openQueue(t, cfg, nil)
	tests := []struct {
		name    string
		size    int64
		wantErr error
	}{
		{name: "fills a segment", size: cfg.SegmentBytes - headerSize},
		{name: "one byte too many", size: cfg.SegmentBytes - headerSize + 1, wantErr: ErrTooLarge},
		{name: "empty", size: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := q.Append(make([]byte, tt.size), 1)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Append(%d bytes) = %v, want %v", tt.size, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), strconv.FormatInt(cfg.SegmentBytes, 10)) {
				t.Fatalf("error %q does not name the limit", err)
			}
		})
	}
}

func TestNext(t *testing.T) {
	type result struct {
		rec Record
		err error
	}
	tests := []struct {
		name      string
		prepare   func(tb testing.TB, q *Queue) // before Next
		unblock   func(tb testing.TB, q *Queue, cancel context.CancelFunc)
		wantSeq   uint64
		wantErr   error
		wantBlock bool
	}{
		{name: "returns a stored record at once", wantSeq: 1,
			prepare: func(tb testing.TB, q *Queue) { appendN(tb, q, 2) }},
		{name: "skips acked records", wantSeq: 3,
			prepare: func(tb testing.TB, q *Queue) {
				appendN(tb, q, 3)
				if err := q.Ack(2); err != nil {
					tb.Fatalf("Ack: %v", err)
				}
			}},
		{name: "blocks until Append", wantBlock: true, wantSeq: 1,
			unblock: func(tb testing.TB, q *Queue, _ context.CancelFunc) { appendN(tb, q, 1) }},
		{name: "blocks past acked records until Append", wantBlock: true, wantSeq: 3,
			prepare: func(tb testing.TB, q *Queue) {
				appendN(tb, q, 2)
				if err := q.Ack(2); err != nil {
					tb.Fatalf("Ack: %v", err)
				}
			},
			unblock: func(tb testing.TB, q *Queue, _ context.CancelFunc) { appendN(tb, q, 1) }},
		{name: "returns ctx error on cancel", wantBlock: true, wantErr: context.Canceled,
			unblock: func(_ testing.TB, _ *Queue, cancel context.CancelFunc) { cancel() }},
		{name: "returns ErrClosed on Close", wantBlock: true, wantErr: ErrClosed,
			unblock: func(_ testing.TB, q *Queue, _ context.CancelFunc) { q.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := openQueue(t, smallConfig(t.TempDir()), nil)
			if tt.prepare != nil {
				tt.prepare(t, q)
			}
			blocked := make(chan struct{}, 1)
			q.onWait = func() {
				select {
				case blocked <- struct{}{}:
				default:
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan result, 1)
			go func() {
				rec, err := q.Next(ctx, 0)
				done <- result{rec, err}
			}()
			var r result
			if tt.wantBlock {
				select {
				case <-blocked:
				case r = <-done:
					t.Fatalf("Next returned %+v without blocking", r)
				}
				tt.unblock(t, q, cancel)
			}
			r = <-done
			if !tt.wantBlock && len(blocked) > 0 {
				t.Error("Next blocked although a record was stored")
			}
			if !errors.Is(r.err, tt.wantErr) || r.rec.Seq != tt.wantSeq {
				t.Fatalf("Next = seq %d, %v; want seq %d, %v", r.rec.Seq, r.err, tt.wantSeq, tt.wantErr)
			}
			if tt.wantSeq > 0 && !bytes.Equal(r.rec.Payload, payloadFor(tt.wantSeq)) {
				t.Fatal("payload differs")
			}
		})
	}
}

func TestID(t *testing.T) {
	idOf := func(tb testing.TB, dir string) string {
		tb.Helper()
		q, err := Open(smallConfig(dir), nil, nil)
		if err != nil {
			tb.Fatalf("Open: %v", err)
		}
		defer q.Close()
		appendN(tb, q, 1)
		return q.ID()
	}
	tests := []struct {
		name   string
		change func(tb testing.TB, dir string) string // returns the dir to reopen
		same   bool
	}{
		{name: "reopen keeps the ID", same: true,
			change: func(_ testing.TB, dir string) string { return dir }},
		{name: "another dir gets another ID",
			change: func(tb testing.TB, _ string) string { return tb.TempDir() }},
		{name: "a wiped dir gets a new ID",
			change: func(tb testing.TB, dir string) string {
				if err := os.RemoveAll(dir); err != nil {
					tb.Fatal(err)
				}
				return dir
			}},
		{name: "an unreadable ack file gets a new ID",
			change: func(tb testing.TB, dir string) string {
				if err := os.WriteFile(filepath.Join(dir, ackedFile), []byte("garbage"), 0o644); err != nil {
					tb.Fatal(err)
				}
				return dir
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			before := idOf(t, dir)
			after := idOf(t, tt.change(t, dir))
			for _, id := range []string{before, after} {
				if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
					t.Fatalf("ID %q is not 32 hex digits", id)
				}
			}
			if (before == after) != tt.same {
				t.Fatalf("IDs %s and %s, want same=%v", before, after, tt.same)
			}
		})
	}
}

// TestIdleFsync checks that a waiting Next performs the periodic fsync that
// no further Append would trigger.
func TestIdleFsync(t *testing.T) {
	cfg := smallConfig(t.TempDir())
	cfg.FsyncInterval = time.Hour
	q, _ := openQueue(t, cfg, nil)
	waits := make(chan struct{}, 2)
	q.onWait = func() { waits <- struct{}{} }
	appendN(t, q, 1)
	q.mu.Lock()
	q.lastSync = time.Now().Add(-time.Hour) // the interval has passed
	q.mu.Unlock()
	before := testutil.ToFloat64(q.m.fsyncs)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := q.Next(ctx, 1)
		done <- err
	}()
	<-waits // blocked with unsynced data
	<-waits // the fsync ran and Next went back to waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next = %v, want context.Canceled", err)
	}
	if got := testutil.ToFloat64(q.m.fsyncs); got != before+1 {
		t.Fatalf("fsyncs_total = %v, want %v", got, before+1)
	}
}

func BenchmarkAppend(b *testing.B) {
	q, _ := openQueue(b, Config{Dir: b.TempDir()}, nil)
	payload := bytes.Repeat([]byte("x"), 16<<10)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.Append(payload, 100); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendNextAck(b *testing.B) {
	q, _ := openQueue(b, Config{Dir: b.TempDir()}, nil)
	payload := bytes.Repeat([]byte("x"), 16<<10)
	ctx := context.Background()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	var last uint64
	for b.Loop() {
		if _, err := q.Append(payload, 100); err != nil {
			b.Fatal(err)
		}
		rec, err := q.Next(ctx, last)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(rec.Seq); err != nil {
			b.Fatal(err)
		}
		last = rec.Seq
	}
}
