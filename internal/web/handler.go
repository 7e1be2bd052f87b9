package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var staticFiles embed.FS

// CookieName is the session cookie: HttpOnly, SameSite=Strict, path /ui/.
const CookieName = "tandem_session"

// CSRFHeader must carry the session's CSRF token on every POST the page
// makes; a cross-site form cannot set it.
const CSRFHeader = "X-Tandem-CSRF"

// Handler serves /ui/ (the page, the login, and /ui/api/ forwarded to api
// without the prefix). api is the API's handler without its token check:
// this handler is the check for /ui/.
func Handler(a *Auth, api http.Handler) http.Handler {
	static, _ := fs.Sub(staticFiles, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/login", func(w http.ResponseWriter, r *http.Request) {
		if t := r.URL.Query().Get("t"); t != "" {
			login(w, r, a, t)
			return
		}
		http.ServeFileFS(w, r, static, "login.html")
	})
	mux.HandleFunc("POST /ui/login", func(w http.ResponseWriter, r *http.Request) {
		login(w, r, a, r.PostFormValue("token"))
	})
	mux.HandleFunc("POST /ui/logout", func(w http.ResponseWriter, r *http.Request) {
		id, _, ok := session(r, a)
		if !ok || !csrfOK(r, a, id) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		a.Logout(id)
		http.SetCookie(w, &http.Cookie{Name: CookieName, Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := session(r, a); !ok {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.HandleFunc("GET /ui/session", func(w http.ResponseWriter, r *http.Request) {
		_, csrf, ok := session(r, a)
		if !ok {
			http.Error(w, `{"error":"not logged in"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"csrf":"` + csrf + `"}`))
	})
	mux.Handle("/ui/api/", http.StripPrefix("/ui/api", authorized(a, api)))
	return headers(mux)
}

// authorized lets through a request with a session cookie (and, unless it
// is a GET or HEAD, the session's CSRF header) or with the API's bearer
// token, which needs no CSRF check: a browser never sends it on its own.
func authorized(a *Auth, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && a.CheckAPIToken(strings.TrimSpace(tok)) {
			next.ServeHTTP(w, r)
			return
		}
		id, _, ok := session(r, a)
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"log in first (/ui/login)"}` + "\n"))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !csrfOK(r, a, id) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":"missing or wrong ` + CSRFHeader + ` header"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func login(w http.ResponseWriter, r *http.Request, a *Auth, tok string) {
	id, _, err := a.Login(tok)
	if err != nil {
		w.Header().Set("Connection", "close")
		http.Error(w, "login refused: wrong, used or expired token", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(SessionTTL.Seconds())})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func session(r *http.Request, a *Auth) (id, csrf string, ok bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return "", "", false
	}
	csrf, ok = a.Session(c.Value)
	return c.Value, csrf, ok
}

func csrfOK(r *http.Request, a *Auth, id string) bool {
	want, ok := a.Session(id)
	got := r.Header.Get(CSRFHeader)
	return ok && got != "" && subtleEqual(got, want)
}

func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
