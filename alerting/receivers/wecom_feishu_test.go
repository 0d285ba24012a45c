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
	commoncfg "github.com/prometheus/common/config"
)

// secret0 converts a test string to a Secret.
func secret0(s string) commoncfg.Secret { return commoncfg.Secret(s) }

func TestWeComNotify(t *testing.T) {
	tests := []struct {
		name   string
		alerts []*types.Alert
		want   []string
	}{
		{name: "firing", alerts: []*types.Alert{firing("db-1")}, want: []string{"### [FIRING:1] DiskFull", "instance = db-1", "disk /data is 97% full"}},
		{name: "resolved", alerts: []*types.Alert{resolved("db-1")}, want: []string{"### [RESOLVED] DiskFull", "**Resolved**", "instance = db-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)
			c := &Config{WeCom: []*WeComConfig{{URL: secretURL(t, srv.URL+"/cgi-bin/webhook/send?key=k-123")}}}
			if retry, err := integrations(t, c)[0].Notify(notifyCtx(t), tc.alerts...); err != nil {
				t.Fatalf("notify: retry=%v err=%v", retry, err)
			}
			r := srv.next(t)
			if r.method != http.MethodPost || r.url.Path != "/cgi-bin/webhook/send" || r.url.Query().Get("key") != "k-123" {
				t.Errorf("got %s %s, want POST to the webhook with its key", r.method, r.url)
			}
			var got struct {
				MsgType  string `json:"msgtype"`
				Markdown struct {
					Content string `json:"content"`
				} `json:"markdown"`
			}
			dec := json.NewDecoder(bytes.NewReader(r.body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("payload %s: %v", r.body, err)
			}
			if got.MsgType != "markdown" {
				t.Errorf("msgtype = %q, want markdown", got.MsgType)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.Markdown.Content, w) {
					t.Errorf("content lacks %q:\n%s", w, got.Markdown.Content)
				}
			}
		})
	}
}

func TestWeComTruncatesToPlatformLimit(t *testing.T) {
	srv := newServer(t, http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)
	c := &Config{WeCom: []*WeComConfig{{
		URL:     secretURL(t, srv.URL+"/send?key=k"),
		Message: `{{ range .Alerts }}{{ .Annotations.summary }}{{ end }}`,
	}}}
	alerts := make([]*types.Alert, 300) // 300 × 22 bytes of summary > 4096
	for i := range alerts {
		alerts[i] = firing("db-" + strconv.Itoa(i))
	}
	if _, err := integrations(t, c)[0].Notify(notifyCtx(t), alerts...); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Markdown struct {
			Content string `json:"content"`
		} `json:"markdown"`
	}
	if err := json.Unmarshal(srv.next(t).body, &got); err != nil {
		t.Fatal(err)
	}
	if n := len(got.Markdown.Content); n > weComMaxContentBytes || n < weComMaxContentBytes-4 || !strings.HasSuffix(got.Markdown.Content, "…") {
		t.Errorf("content is %d bytes ending %q, want truncated to %d with a marker", n, got.Markdown.Content[n-5:], weComMaxContentBytes)
	}
}

func TestFeishuSignKnownVector(t *testing.T) {
	// Computed independently with Python's hmac, as Feishu's docs do.
	ts, sign := feishuSign("feishu-secret", time.Unix(1700000000, 0))
	if ts != "1700000000" {
		t.Errorf("timestamp = %q, want seconds 1700000000", ts)
	}
	if want := "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="; sign != want {
		t.Errorf("sign = %q, want %q", sign, want)
	}
}

// feishuWire is Feishu's custom bot message as documented.
type feishuWire struct {
	Timestamp string `json:"timestamp"`
	Sign      string `json:"sign"`
	MsgType   string `json:"msg_type"`
	Content   *struct {
		Text string `json:"text"`
	} `json:"content"`
	Card *struct {
		Config struct {
			WideScreenMode bool `json:"wide_screen_mode"`
		} `json:"config"`
		Header struct {
			Title struct {
				Tag     string `json:"tag"`
				Content string `json:"content"`
			} `json:"title"`
			Template string `json:"template"`
		} `json:"header"`
		Elements []struct {
			Tag  string `json:"tag"`
			Text struct {
				Tag     string `json:"tag"`
				Content string `json:"content"`
			} `json:"text"`
		} `json:"elements"`
	} `json:"card"`
}

func TestFeishuNotify(t *testing.T) {
	const secret = "feishu-secret"
	tests := []struct {
		name      string
		msgType   string
		secret    string
		alerts    []*types.Alert
		wantTitle string
		wantColor string
		wantText  []string
	}{
		{name: "text firing signed", secret: secret, alerts: []*types.Alert{firing("db-1")}, wantTitle: "[FIRING:1] DiskFull (db-1)", wantText: []string{"**Firing**", "instance = db-1"}},
		{name: "text resolved unsigned", alerts: []*types.Alert{resolved("db-1")}, wantTitle: "[RESOLVED] DiskFull (db-1)", wantText: []string{"**Resolved**"}},
		{name: "card firing signed", msgType: "interactive", secret: secret, alerts: []*types.Alert{firing("db-1")}, wantTitle: "[FIRING:1] DiskFull (db-1)", wantColor: "red", wantText: []string{"instance = db-1"}},
		{name: "card resolved", msgType: "interactive", secret: secret, alerts: []*types.Alert{resolved("db-1")}, wantTitle: "[RESOLVED] DiskFull (db-1)", wantColor: "green", wantText: []string{"**Resolved**"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.StatusOK, `{"code":0,"msg":"success","data":{},"StatusCode":0,"StatusMessage":"success"}`)
			c := &Config{Feishu: []*FeishuConfig{{URL: secretURL(t, srv.URL+"/open-apis/bot/v2/hook/hook-id"), Secret: secret0(tc.secret), MsgType: tc.msgType}}}
			if retry, err := integrations(t, c)[0].Notify(notifyCtx(t), tc.alerts...); err != nil {
				t.Fatalf("notify: retry=%v err=%v", retry, err)
			}
			r := srv.next(t)
			if r.method != http.MethodPost || r.url.Path != "/open-apis/bot/v2/hook/hook-id" || r.url.RawQuery != "" {
				t.Errorf("got %s %s, want POST to the hook with no query", r.method, r.url)
			}
			var got feishuWire
			dec := json.NewDecoder(bytes.NewReader(r.body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("payload %s: %v", r.body, err)
			}

			if tc.secret == "" {
				if got.Timestamp != "" || got.Sign != "" {
					t.Errorf("unsigned bot got timestamp %q sign %q", got.Timestamp, got.Sign)
				}
			} else {
				// Recompute as Feishu's server does.
				sec, err := strconv.ParseInt(got.Timestamp, 10, 64)
				if err != nil {
					t.Fatalf("timestamp %q: %v", got.Timestamp, err)
				}
				if d := time.Since(time.Unix(sec, 0)); d < -time.Hour || d > time.Hour {
					t.Errorf("timestamp %s is %v from now; Feishu allows an hour", got.Timestamp, d)
				}
				mac := hmac.New(sha256.New, []byte(got.Timestamp+"\n"+tc.secret))
				if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); got.Sign != want {
					t.Errorf("sign = %q, want %q", got.Sign, want)
				}
			}

			var text string
			switch tc.msgType {
			case "interactive":
				if got.MsgType != "interactive" || got.Card == nil || got.Content != nil || len(got.Card.Elements) != 1 {
					t.Fatalf("want one-element card only, got %s", r.body)
				}
				h := got.Card.Header
				if h.Title.Tag != "plain_text" || h.Title.Content != tc.wantTitle || h.Template != tc.wantColor {
					t.Errorf("header = %+v, want plain_text %q in %s", h, tc.wantTitle, tc.wantColor)
				}
				if e := got.Card.Elements[0]; e.Tag != "div" || e.Text.Tag != "lark_md" {
					t.Errorf("element = %+v, want div with lark_md", e)
				}
				text = got.Card.Elements[0].Text.Content
			default:
				if got.MsgType != "text" || got.Content == nil || got.Card != nil {
					t.Fatalf("want text content only, got %s", r.body)
				}
				text = got.Content.Text
				if !strings.HasPrefix(text, tc.wantTitle+"\n") {
					t.Errorf("text does not start with the title %q:\n%s", tc.wantTitle, text)
				}
			}
			for _, w := range tc.wantText {
				if !strings.Contains(text, w) {
					t.Errorf("text lacks %q:\n%s", w, text)
				}
			}
		})
	}
}
