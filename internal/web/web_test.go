package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func setup(t *testing.T) (*Auth, *fakeClock, http.Handler) {
	c := &fakeClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	a := NewAuth("api-secret", c.now)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("api " + r.Method + " " + r.URL.Path))
	})
	return a, c, Handler(a, api)
}

func do(h http.Handler, method, target string, body string, hdr map[string]string, cookie *http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func sessionCookie(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Fatalf("cookie %+v is not HttpOnly SameSite=Strict", c)
			}
			return c
		}
	}
	t.Fatalf("no session cookie: %d %s", w.Code, w.Body)
	return nil
}

func TestPageNeedsLogin(t *testing.T) {
	_, _, h := setup(t)
	if w := do(h, "GET", "/ui/", "", nil, nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/login" {
		t.Fatalf("page without login: %d %v", w.Code, w.Header())
	}
	if w := do(h, "GET", "/ui/api/v1/status", "", nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("api without login: %d", w.Code)
	}
	forged := &http.Cookie{Name: CookieName, Value: "forged"}
	if w := do(h, "GET", "/ui/api/v1/status", "", nil, forged); w.Code != http.StatusUnauthorized {
		t.Fatalf("api with forged cookie: %d", w.Code)
	}
	if w := do(h, "POST", "/ui/login", "token=wrong", nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", w.Code)
	}
	if w := do(h, "GET", "/ui/login?t=forged", "", nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("forged login token: %d", w.Code)
	}
	if w := do(h, "GET", "/ui/api/v1/status", "", map[string]string{"Authorization": "Bearer api-secret"}, nil); w.Code != 200 || w.Body.String() != "api GET /v1/status" {
		t.Fatalf("bearer token: %d %s", w.Code, w.Body)
	}
}

func TestLoginSessionAndCSRF(t *testing.T) {
	a, c, h := setup(t)
	w := do(h, "POST", "/ui/login", url.Values{"token": {"api-secret"}}.Encode(), nil, nil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	ck := sessionCookie(t, w)
	if w := do(h, "GET", "/ui/", "", nil, ck); w.Code != 200 || !strings.Contains(w.Body.String(), "app.js") {
		t.Fatalf("page: %d", w.Code)
	}
	csrf, _ := a.Session(ck.Value)
	if w := do(h, "POST", "/ui/api/v1/groups/g/failover", "", nil, ck); w.Code != http.StatusForbidden {
		t.Fatalf("POST without CSRF header: %d", w.Code)
	}
	if w := do(h, "POST", "/ui/api/v1/groups/g/failover", "", map[string]string{CSRFHeader: "nope"}, ck); w.Code != http.StatusForbidden {
		t.Fatalf("POST with wrong CSRF header: %d", w.Code)
	}
	if w := do(h, "POST", "/ui/api/v1/groups/g/failover", "", map[string]string{CSRFHeader: csrf}, ck); w.Code != 200 || w.Body.String() != "api POST /v1/groups/g/failover" {
		t.Fatalf("POST with CSRF: %d %s", w.Code, w.Body)
	}
	c.t = c.t.Add(SessionTTL)
	if w := do(h, "GET", "/ui/api/v1/status", "", nil, ck); w.Code != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", w.Code)
	}
}

func TestOneTimeLoginToken(t *testing.T) {
	a, c, h := setup(t)
	tok := a.MintLoginToken()
	w := do(h, "GET", "/ui/login?t="+tok, "", nil, nil)
	sessionCookie(t, w)
	if w := do(h, "GET", "/ui/login?t="+tok, "", nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("second use of a one-time token: %d", w.Code)
	}
	late := a.MintLoginToken()
	c.t = c.t.Add(LoginTokenTTL)
	if w := do(h, "GET", "/ui/login?t="+late, "", nil, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("expired one-time token: %d", w.Code)
	}
}

func TestStoreIsBounded(t *testing.T) {
	a, _, _ := setup(t)
	first := a.MintLoginToken()
	for range 3 * MaxLoginTokens {
		a.MintLoginToken()
	}
	for range 3 * MaxSessions {
		if _, _, err := a.Login("api-secret"); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.logins) > MaxLoginTokens || len(a.sessions) > MaxSessions {
		t.Fatalf("%d login tokens, %d sessions", len(a.logins), len(a.sessions))
	}
	_ = first
}
