package frontend

import (
	"embed"
	"net/http"
	"strings"
)

// web is the live page: plain HTML, CSS and an ES module, no build step.
// Without JavaScript, index.html is a form that posts one image.
//
//go:embed web
var web embed.FS

// pageCSP keeps the page to its own web tier: scripts, styles and every
// fetch same-origin, no inline script, and images only its own or the
// previews made from the files picked (blob:).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	body, err := web.ReadFile("web/index.html")
	if err != nil {
		s.writeError(w, r, fail(http.StatusInternalServerError, "internal error").because(err), "")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
}

// assets serves the page's script and style under /web/.
func (s *Server) assets() http.Handler {
	files := http.FileServerFS(web)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no listing
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
