package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// TestBatchStoredBeforeItsAckWasLost closes docs/storage.md's window: a
// hub killed after its samples INSERT and before its agent_progress INSERT
// stored a batch without recording its seq, so the agent resends it to a
// hub that has no progress for it. Here the first copy is stored under one
// agent ID and the resend comes under another, with no progress: the hub
// finds the batch's samples stored, answers it as a duplicate and stores
// nothing twice; the next batch, new, is stored.
func TestBatchStoredBeforeItsAckWasLost(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	token := readToken(t, e.tokens["consular"])
	batch := func(from int64) []byte {
		var ss []prompb.TimeSeries
		for i := range 5 {
			ts := series("e2e_window", 0, "i", fmt.Sprint(i))
			ts.Samples = []prompb.Sample{{Timestamp: from, Value: float64(i)}, {Timestamp: from + 15_000, Value: float64(i)}}
			ss = append(ss, ts)
		}
		return encode(t, ss...)
	}
	now := time.Now().UnixMilli()
	first := &rawClient{stream: e.dial(t, token), agent: "agent-before-crash"}
	if ack, err := first.send(t, batch(now-60_000), 10); err != nil || ack.Code != 0 || ack.Duplicate {
		t.Fatalf("first copy: %v %+v", err, ack)
	}
	resend := &rawClient{stream: e.dial(t, token), agent: "agent-after-crash"}
	ack, err := resend.send(t, batch(now-60_000), 10)
	if err != nil || ack.Code != 0 || !ack.Duplicate {
		t.Fatalf("resent batch: %v %+v, want a duplicate acknowledgement", err, ack)
	}
	ack, err = resend.send(t, batch(now-30_000), 10)
	if err != nil || ack.Code != 0 || ack.Duplicate {
		t.Fatalf("next batch: %v %+v, want stored", err, ack)
	}
	var rows, distinct uint64
	q := "SELECT count(), uniqExact(fingerprint, ts) FROM " + e.db + ".samples WHERE tenant = 'consular' AND fingerprint IN " +
		"(SELECT fingerprint FROM " + e.db + ".series WHERE tenant = 'consular' AND metric_name = 'e2e_window')"
	if err := e.conn.QueryRow(context.Background(), q).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != 20 || distinct != 20 {
		t.Errorf("stored %d rows, %d distinct samples; want 20 and 20 (the resend stored nothing)", rows, distinct)
	}
}
