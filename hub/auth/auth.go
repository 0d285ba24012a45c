// Package auth maps bearer tokens to tenants (bureaus) and their roles.
// Tokens are compared by SHA-256 digest in constant time and never logged.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Role is what a tenant's token may do.
type Role string

const (
	// RoleBureau may write and read its own tenant's data only.
	RoleBureau Role = "bureau"
	// RoleCrossBureau (the data bureau) may also read every tenant's data.
	RoleCrossBureau Role = "cross_bureau"
)

// TenantConfig declares one tenant and its token.
type TenantConfig struct {
	// Name is the tenant id; the hub stores it with every series and
	// forces the series' "bureau" label to it.
	Name string `yaml:"name"`
	// TokenFile holds the token (first line). Preferred over Token.
	TokenFile string `yaml:"token_file"`
	// Token inline; for demos. Never logged or served.
	Token string `yaml:"token"`
	Role  Role   `yaml:"role"`
}

// Principal is an authenticated caller.
type Principal struct {
	Tenant string
	Role   Role
}

// CanReadAll reports whether the principal may read every tenant.
func (p Principal) CanReadAll() bool { return p.Role == RoleCrossBureau }

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate checks one tenant's config; field names it reports are relative
// to the tenants list, e.g. "tenants[2].token_file".
func (c *TenantConfig) Validate(i int) error {
	f := func(field string) string { return fmt.Sprintf("tenants[%d].%s", i, field) }
	if !tenantRE.MatchString(c.Name) {
		return fmt.Errorf("%s: %q must match %s", f("name"), c.Name, tenantRE)
	}
	switch c.Role {
	case "", RoleBureau, RoleCrossBureau:
	default:
		return fmt.Errorf("%s: %q is not %q or %q", f("role"), c.Role, RoleBureau, RoleCrossBureau)
	}
	if (c.TokenFile == "") == (c.Token == "") {
		return fmt.Errorf("%s: exactly one of token_file and token is required", f("token_file"))
	}
	if c.TokenFile != "" {
		if _, err := ReadTokenFile(c.TokenFile); err != nil {
			return fmt.Errorf("%s: %w", f("token_file"), err)
		}
	} else if len(c.Token) < 16 {
		return fmt.Errorf("%s: must be at least 16 characters", f("token"))
	}
	return nil
}

// ReadTokenFile returns the first line of a token file.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if len(tok) < 16 {
		return "", fmt.Errorf("token in %s is shorter than 16 characters", path)
	}
	return tok, nil
}

// Authenticator resolves tokens. It is immutable and safe for concurrent use.
type Authenticator struct {
	byDigest map[[32]byte]Principal
	digests  [][32]byte
}

// New builds an Authenticator from validated tenant configs.
func New(tenants []TenantConfig) (*Authenticator, error) {
	a := &Authenticator{byDigest: make(map[[32]byte]Principal)}
	names := make(map[string]bool)
	for i, t := range tenants {
		if err := t.Validate(i); err != nil {
			return nil, err
		}
		if names[t.Name] {
			return nil, fmt.Errorf("tenants[%d].name: %q is declared twice", i, t.Name)
		}
		names[t.Name] = true
		tok := t.Token
		if t.TokenFile != "" {
			var err error
			if tok, err = ReadTokenFile(t.TokenFile); err != nil {
				return nil, fmt.Errorf("tenants[%d].token_file: %w", i, err)
			}
		}
		d := sha256.Sum256([]byte(tok))
		if _, dup := a.byDigest[d]; dup {
			return nil, fmt.Errorf("tenants[%d].token: the same token is used by another tenant", i)
		}
		role := t.Role
		if role == "" {
			role = RoleBureau
		}
		a.byDigest[d] = Principal{Tenant: t.Name, Role: role}
		a.digests = append(a.digests, d)
	}
	return a, nil
}

// ErrUnauthenticated means the token is missing or unknown.
var ErrUnauthenticated = errors.New("missing or unknown token")

// Authenticate returns the principal of token. Every known digest is
// compared, so the time taken does not depend on which tenant matched.
func (a *Authenticator) Authenticate(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrUnauthenticated
	}
	d := sha256.Sum256([]byte(token))
	var found [32]byte
	ok := 0
	for _, k := range a.digests {
		eq := subtle.ConstantTimeCompare(d[:], k[:])
		if eq == 1 {
			found = k
		}
		ok |= eq
	}
	if ok == 0 {
		return Principal{}, ErrUnauthenticated
	}
	return a.byDigest[found], nil
}

// BearerToken extracts the token from an "Authorization: Bearer x" value.
func BearerToken(header string) string {
	const prefix = "bearer "
	if len(header) > len(prefix) && strings.EqualFold(header[:len(prefix)], prefix) {
		return strings.TrimSpace(header[len(prefix):])
	}
	return ""
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal stored by WithPrincipal.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
