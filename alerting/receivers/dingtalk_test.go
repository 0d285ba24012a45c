package receivers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/types"
	"github.com/prometheus/common/promslog"
)

func TestDingTalkSignKnownVector(t *testing.T) {
	// Computed independently with Python's hmac, as DingTalk's docs do.
	ts, sign := dingTalkSign("SEC0123456789abcdef", time.UnixMilli(1700000000000))
	if ts != "1700000000000" {
		t.Errorf("timestamp = %q, want milliseconds 1700000000000", ts)
	}
	if want := "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="; sign != want {
		t.Errorf("sign = %q, want %q", sign, want)
	}
}

// dingTalkWire is DingTalk's markdown message as documented; decoding with
// DisallowUnknownFields rejects anything else.
type dingTalkWire struct {
	MsgType  string `json:"msgtype"`
	Markdown struct {
		Title string `json:"title"`
		Text  string `json:"text"`
	} `json:"markdown"`
	At *struct {
		AtMobiles []string `json:"atMobiles"`
		IsAtAll   bool     `json:"isAtAll"`
	} `json:"at"`
}

// verifyDingTalkSign recomputes the signature the way DingTalk's server does.
func verifyDingTalkSign(t *testing.T, q map[string][]string, secret string) {
	t.Helper()
	ts, sign := first(q["timestamp"]), first(q["sign"])
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatalf("timestamp %q: %v", ts, err)
	}
	if d := time.Since(time.UnixMilli(ms)); d < -time.Hour || d > time.Hour {
		t.Errorf("timestamp %s is %v from now; DingTalk allows an hour", ts, d)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "\n" + secret))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); sign != want {
		t.Errorf("sign = %q, want %q", sign, want)
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func TestDingTalkNotify(t *testing.T) {
	const secret = "SEC0123456789abcdef"
	tests := []struct {
		name      string
		secret    string
		atMobiles []string
		atAll     bool
		alerts    []*types.Alert
		wantTitle string
		wantText  []string
	}{
		{
			name:      "firing signed with mentions",
			secret:    secret,
			atMobiles: []string{"13800000000"},
			alerts:    []*types.Alert{firing("db-1"), firing("db-2")},
			wantTitle: "[FIRING:2] DiskFull",
			wantText:  []string{"### [FIRING:2] DiskFull", "**Firing**", "instance = db-1", "instance = db-2", "disk /data is 97% full"},
		},
		{
			name:      "resolved signed, everyone mentioned",
			secret:    secret,
			atAll:     true,
			alerts:    []*types.Alert{resolved("db-1")},
			wantTitle: "[RESOLVED] DiskFull (db-1)",
			wantText:  []string{"### [RESOLVED] DiskFull (db-1)", "**Resolved**", "instance = db-1"},
		},
		{
			name:      "unsigned",
			alerts:    []*types.Alert{firing("db-1")},
			wantTitle: "[FIRING:1] DiskFull (db-1)",
			wantText:  []string{"instance = db-1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)
			c := &Config{DingTalk: []*DingTalkConfig{{
				URL:       secretURL(t, srv.URL+"/robot/send?access_token=tok123"),
				Secret:    secret0(tc.secret),
				AtMobiles: tc.atMobiles,
				AtAll:     tc.atAll,
			}}}
			ints := integrations(t, c)
			if retry, err := ints[0].Notify(notifyCtx(t), tc.alerts...); err != nil {
				t.Fatalf("notify: retry=%v err=%v", retry, err)
			}
			r := srv.next(t)
			if r.method != http.MethodPost || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("got %s with Content-Type %q, want POST application/json", r.method, r.header.Get("Content-Type"))
			}
			q := r.url.Query()
			if q.Get("access_token") != "tok123" {
				t.Errorf("access_token = %q, want it kept", q.Get("access_token"))
			}
			if tc.secret != "" {
				verifyDingTalkSign(t, q, tc.secret)
			} else if q.Has("sign") || q.Has("timestamp") {
				t.Errorf("unsigned robot got sign parameters: %s", r.url.RawQuery)
			}

			var got dingTalkWire
			dec := json.NewDecoder(bytes.NewReader(r.body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("payload %s: %v", r.body, err)
			}
			if got.MsgType != "markdown" || got.Markdown.Title != tc.wantTitle {
				t.Errorf("msgtype %q title %q, want markdown %q", got.MsgType, got.Markdown.Title, tc.wantTitle)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(got.Markdown.Text, w) {
					t.Errorf("text lacks %q:\n%s", w, got.Markdown.Text)
				}
			}
			switch {
			case len(tc.atMobiles) == 0 && !tc.atAll:
				if got.At != nil {
					t.Errorf("at = %+v, want absent", got.At)
				}
			case got.At == nil || got.At.IsAtAll != tc.atAll || strings.Join(got.At.AtMobiles, ",") != strings.Join(tc.atMobiles, ","):
				t.Errorf("at = %+v, want mobiles %v all %v", got.At, tc.atMobiles, tc.atAll)
			}
		})
	}
}

// TestDingTalkSignEscaped pins the clock to a time whose signature has '/'
// and '=', which must be escaped in the query or DingTalk decodes another
// signature.
func TestDingTalkSignEscaped(t *testing.T) {
	srv := newServer(t, http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)
	c := &DingTalkConfig{URL: secretURL(t, srv.URL+"/robot/send?access_token=tok"), Secret: "SEC0123456789abcdef"}
	if err := c.validate("dingtalk_configs[0]"); err != nil {
		t.Fatal(err)
	}
	n, err := newDingTalk(c, newTemplate(t), promslog.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	n.now = func() time.Time { return time.UnixMilli(1700000000000) }
	if _, err := n.Notify(notifyCtx(t), firing("db-1")); err != nil {
		t.Fatal(err)
	}
	r := srv.next(t)
	if want := "sign=TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D"; !strings.Contains(r.url.RawQuery, want) {
		t.Errorf("raw query %q lacks %q", r.url.RawQuery, want)
	}
	if !strings.Contains(r.url.RawQuery, "timestamp=1700000000000") {
		t.Errorf("raw query %q lacks the millisecond timestamp", r.url.RawQuery)
	}
}
