package healthcode

import "testing"

func TestPersonIDRoundTrip(t *testing.T) {
	for _, i := range []int{0, 1, 42, 99999, 123456789} {
		id := PersonID(i)
		got, err := ParseID(id)
		if err != nil || got != i {
			t.Fatalf("ParseID(PersonID(%d)=%q) = %d, %v", i, id, got, err)
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	good := PersonID(7)
	flip := []byte(good)
	if flip[16] == '9' {
		flip[16] = '8'
	} else {
		flip[16]++
	}
	tests := []struct{ name, id string }{
		{"empty", ""},
		{"short", good[:17]},
		{"letters", "33010ABCDEFGHIJKL1"},
		{"bad check", string(flip)},
		{"other population", "11010519491231002X"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseID(tt.id); err == nil {
				t.Fatalf("ParseID(%q) accepted a bad id", tt.id)
			}
		})
	}
	// A real-format number with a valid check character (GB 11643's
	// published example) passes the format checks and fails only on prefix.
	if _, err := ParseID("11010519491231002X"); err != errIDPrefix {
		t.Fatalf("GB 11643 example: got %v, want the prefix error", err)
	}
}
