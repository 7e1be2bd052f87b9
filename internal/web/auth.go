// Package web owns the dashboard: an embedded page (no build step, no CDN)
// served on the API's TCP listener behind a login. It holds the sessions,
// the one-time login tokens a unix-socket user mints, and CSRF checks, and
// forwards the page's calls to the API's own handler. internal/api imports
// it; it imports nothing of ours.
package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// The bounds of the store: a flood of logins or minted tokens evicts the
// oldest instead of growing the agent.
const (
	MaxSessions    = 64
	MaxLoginTokens = 16
	SessionTTL     = 12 * time.Hour
	LoginTokenTTL  = 60 * time.Second
)

// ErrRefused is every refused login: the caller learns no more.
var ErrRefused = errors.New("web: login refused")

type sessionEntry struct {
	csrf    string
	expires time.Time
}

// Auth checks logins and holds sessions. Time comes from now, so tests
// drive expiry without sleeping.
type Auth struct {
	apiToken []byte
	now      func() time.Time

	mu       sync.Mutex
	sessions map[string]sessionEntry // session id -> session
	logins   map[string]time.Time    // one-time login token -> expiry
}

// NewAuth checks logins against the API's bearer token; now nil is
// time.Now.
func NewAuth(apiToken string, now func() time.Time) *Auth {
	if now == nil {
		now = time.Now
	}
	return &Auth{apiToken: []byte(apiToken), now: now, sessions: map[string]sessionEntry{}, logins: map[string]time.Time{}}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// MintLoginToken returns a token good for one login within LoginTokenTTL
// (for `tandem dashboard --url`, asked over the unix socket).
func (a *Auth) MintLoginToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.expireLocked(now)
	for len(a.logins) >= MaxLoginTokens {
		evictOldest(a.logins, func(t time.Time) time.Time { return t })
	}
	t := randomToken()
	a.logins[t] = now.Add(LoginTokenTTL)
	return t
}

// CheckAPIToken says whether tok is the API's bearer token.
func (a *Auth) CheckAPIToken(tok string) bool {
	return len(a.apiToken) > 0 && subtle.ConstantTimeCompare([]byte(tok), a.apiToken) == 1
}

// Login accepts the API token or an unexpired, unused one-time token and
// returns a new session id and its CSRF token.
func (a *Auth) Login(tok string) (id, csrf string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.expireLocked(now)
	ok := a.CheckAPIToken(tok)
	if !ok {
		if exp, found := a.logins[tok]; found && now.Before(exp) {
			delete(a.logins, tok) // one use
			ok = true
		}
	}
	if !ok {
		return "", "", ErrRefused
	}
	for len(a.sessions) >= MaxSessions {
		evictOldest(a.sessions, func(s sessionEntry) time.Time { return s.expires })
	}
	id, csrf = randomToken(), randomToken()
	a.sessions[id] = sessionEntry{csrf: csrf, expires: now.Add(SessionTTL)}
	return id, csrf, nil
}

// Session returns the CSRF token of a live session.
func (a *Auth) Session(id string) (csrf string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, found := a.sessions[id]
	if !found || !a.now().Before(s.expires) {
		delete(a.sessions, id)
		return "", false
	}
	return s.csrf, true
}

// Logout ends a session.
func (a *Auth) Logout(id string) {
	a.mu.Lock()
	delete(a.sessions, id)
	a.mu.Unlock()
}

func (a *Auth) expireLocked(now time.Time) {
	for t, exp := range a.logins {
		if !now.Before(exp) {
			delete(a.logins, t)
		}
	}
	for id, s := range a.sessions {
		if !now.Before(s.expires) {
			delete(a.sessions, id)
		}
	}
}

func evictOldest[V any](m map[string]V, at func(V) time.Time) {
	var oldest string
	var first time.Time
	for k, v := range m {
		if oldest == "" || at(v).Before(first) {
			oldest, first = k, at(v)
		}
	}
	delete(m, oldest)
}

func subtleEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
