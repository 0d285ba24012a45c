package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bureauhub/bureauhub/hub/auth"
)

const (
	tokA = "token-a-0123456789"
	tokB = "token-b-0123456789"
)

// tokenFile writes content to a file in a fresh directory and returns its
// path.
func tokenFile(tb testing.TB, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name    string
		tenants func(tb testing.TB) []auth.TenantConfig
		field   string // the field the error must name
		detail  string // and a word of why
	}{
		{
			name: "duplicate name",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", Token: tokA}, {Name: "b", Token: tokB}, {Name: "a", Token: "token-c-0123456789"}}
			},
			field: "tenants[2].name", detail: "twice",
		},
		{
			name: "duplicate token",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", Token: tokA}, {Name: "b", Token: tokA}}
			},
			field: "tenants[1].token", detail: "another tenant",
		},
		{
			name: "duplicate token across inline and file",
			tenants: func(tb testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", Token: tokA}, {Name: "b", TokenFile: tokenFile(tb, tokA+"\n")}}
			},
			field: "tenants[1].token", detail: "another tenant",
		},
		{
			name: "short token",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", Token: tokA}, {Name: "b", Token: "short"}}
			},
			field: "tenants[1].token", detail: "16",
		},
		{
			name: "short token file",
			tenants: func(tb testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", TokenFile: tokenFile(tb, "short\n"+tokA)}}
			},
			field: "tenants[0].token_file", detail: "16",
		},
		{
			name: "missing token file",
			tenants: func(tb testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", TokenFile: filepath.Join(tb.TempDir(), "absent")}}
			},
			field: "tenants[0].token_file", detail: "absent",
		},
		{
			name: "both token and token file",
			tenants: func(tb testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", Token: tokA, TokenFile: tokenFile(tb, tokB)}}
			},
			field: "tenants[0].token_file", detail: "exactly one",
		},
		{
			name: "neither token nor token file",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a"}}
			},
			field: "tenants[0].token_file", detail: "exactly one",
		},
		{
			name: "bad role",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "a", Token: tokA}, {Name: "b", Token: tokB, Role: "admin"}}
			},
			field: "tenants[1].role", detail: "admin",
		},
		{
			name: "bad name",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "Bad Name", Token: tokA}}
			},
			field: "tenants[0].name", detail: "Bad Name",
		},
		{
			name: "empty name",
			tenants: func(testing.TB) []auth.TenantConfig {
				return []auth.TenantConfig{{Name: "", Token: tokA}}
			},
			field: "tenants[0].name", detail: "must match",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := auth.New(tt.tenants(t))
			if err == nil {
				t.Fatalf("New succeeded (%v), want an error naming %s", a, tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("error %q does not start with %q", err, tt.field+":")
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not mention %q", err, tt.detail)
			}
			for _, tok := range []string{tokA, tokB} {
				if strings.Contains(err.Error(), tok) {
					t.Errorf("error %q leaks a token", err)
				}
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	a, err := auth.New([]auth.TenantConfig{
		{Name: "alpha", Token: tokA},
		{Name: "data", TokenFile: tokenFile(t, "  "+tokB+"  \r\nsecond line ignored\n"), Role: auth.RoleCrossBureau},
		{Name: "gamma", Token: "token-g-0123456789", Role: auth.RoleBureau},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name  string
		token string
		want  auth.Principal
		err   error
	}{
		{name: "inline token, default role", token: tokA, want: auth.Principal{Tenant: "alpha", Role: auth.RoleBureau}},
		{name: "token file, first line trimmed", token: tokB, want: auth.Principal{Tenant: "data", Role: auth.RoleCrossBureau}},
		{name: "explicit bureau role", token: "token-g-0123456789", want: auth.Principal{Tenant: "gamma", Role: auth.RoleBureau}},
		{name: "wrong token", token: "token-x-0123456789", err: auth.ErrUnauthenticated},
		{name: "empty token", token: "", err: auth.ErrUnauthenticated},
		{name: "prefix of a token", token: tokA[:len(tokA)-1], err: auth.ErrUnauthenticated},
		{name: "token with the file's padding", token: "  " + tokB, err: auth.ErrUnauthenticated},
		{name: "second line of a token file", token: "second line ignored", err: auth.ErrUnauthenticated},
		{name: "case differs", token: strings.ToUpper(tokA), err: auth.ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Authenticate(tt.token)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Authenticate = %v, %v; want error %v", got, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Authenticate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCanReadAll(t *testing.T) {
	tests := []struct {
		role auth.Role
		want bool
	}{
		{auth.RoleBureau, false},
		{auth.RoleCrossBureau, true},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			if got := (auth.Principal{Tenant: "x", Role: tt.role}).CanReadAll(); got != tt.want {
				t.Errorf("CanReadAll = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   string
	}{
		{name: "canonical", header: "Bearer abc", want: "abc"},
		{name: "lower case scheme", header: "bearer abc", want: "abc"},
		{name: "upper case scheme", header: "BEARER abc", want: "abc"},
		{name: "padding trimmed", header: "Bearer   abc  ", want: "abc"},
		{name: "token keeps its case", header: "Bearer AbC", want: "AbC"},
		{name: "empty", header: "", want: ""},
		{name: "scheme only", header: "Bearer", want: ""},
		{name: "scheme and space only", header: "Bearer ", want: ""},
		{name: "scheme and spaces only", header: "Bearer    ", want: ""},
		{name: "no space after scheme", header: "Bearerabc", want: ""},
		{name: "basic auth", header: "Basic YWxhZGRpbjpvcGVuc2VzYW1l", want: ""},
		{name: "bare token", header: "abc", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.BearerToken(tt.header); got != tt.want {
				t.Errorf("BearerToken(%q) = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{name: "single line", content: tokA, want: tokA},
		{name: "trailing newline", content: tokA + "\n", want: tokA},
		{name: "CRLF", content: tokA + "\r\n", want: tokA},
		{name: "first line only", content: tokA + "\n" + tokB + "\n", want: tokA},
		{name: "surrounding spaces", content: " \t" + tokA + " \n", want: tokA},
		{name: "empty", content: "", wantErr: "shorter than 16"},
		{name: "short first line", content: "short\n" + tokA, wantErr: "shorter than 16"},
		{name: "blank first line", content: "\n" + tokA, wantErr: "shorter than 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.ReadTokenFile(tokenFile(t, tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadTokenFile = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ReadTokenFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		if _, err := auth.ReadTokenFile(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want os.ErrNotExist", err)
		}
	})
}

func TestPrincipalContext(t *testing.T) {
	if _, ok := auth.FromContext(context.Background()); ok {
		t.Error("FromContext found a principal in an empty context")
	}
	p := auth.Principal{Tenant: "alpha", Role: auth.RoleCrossBureau}
	got, ok := auth.FromContext(auth.WithPrincipal(context.Background(), p))
	if !ok || got != p {
		t.Errorf("FromContext = %+v, %v; want %+v", got, ok, p)
	}
}

func TestEmptyAuthenticatorRejectsAll(t *testing.T) {
	a, err := auth.New(nil)
	if err != nil {
		t.Fatalf("New(nil): %v", err)
	}
	if _, err := a.Authenticate(tokA); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Authenticate = %v, want ErrUnauthenticated", err)
	}
}
