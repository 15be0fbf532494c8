package frontend

import "net/http"

// page is a minimal browser form for trying the service by hand.
const page = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Surge</title>
<style>body{font:16px system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}</style>
<h1>Surge</h1>
<p>Upload a photo to have it recognised. Programs can POST the same form:
<code>curl -F inputFile=@photo.jpg http://host:8000/</code>.</p>
<form method="post" enctype="multipart/form-data">
<input type="file" name="inputFile" accept="image/*" required>
<button>Recognise</button>
</form>
<p><a href="/status">status</a></p>
`

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(page))
}
