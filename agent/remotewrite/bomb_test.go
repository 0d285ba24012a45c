package remotewrite_test

import (
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/bureauhub/bureauhub/agent/remotewrite"
)

// TestSnappyBombIsRefused sends a few bytes whose snappy header claims 32
// MiB: Decode must refuse it as corrupt without allocating the claim.
func TestSnappyBombIsRefused(t *testing.T) {
	body := binary.AppendUvarint(nil, remotewrite.MaxRequestBytes-1)
	body = append(body, 0x00)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := remotewrite.Decode(body)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Decode = %v, want a corrupt-header error", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing a %d-byte body allocated %d bytes", len(body), n)
	}
}
