package analytics

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

//go:embed web
var webFiles embed.FS

// Dashboard serves the web dashboard: index.html at / and the other
// embedded files under /assets/. It needs no network beyond this server.
type Dashboard struct{}

// Handle answers the request if its path is the dashboard's and reports
// whether it did.
func (Dashboard) Handle(ctx *fasthttp.RequestCtx) bool {
	p := string(ctx.Path())
	var name string
	switch {
	case p == "/" || p == "/index.html":
		name = "web/index.html"
	case strings.HasPrefix(p, "/assets/"):
		name = path.Clean("web/" + strings.TrimPrefix(p, "/assets/"))
		if !strings.HasPrefix(name, "web/") {
			return false
		}
	default:
		return false
	}
	body, err := fs.ReadFile(webFiles, name)
	if err != nil {
		ctx.Error("Not found", fasthttp.StatusNotFound)
		return true
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	ctx.SetContentType(ctype)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetBody(body)
	return true
}
