package recognize

import (
	"flag"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/assets"
)

// A worker started with c.Args() gets exactly c, whatever its own
// defaults: Args and Flags speak the same flags.
func TestArgsRoundTrip(t *testing.T) {
	for _, c := range []Config{
		{
			Model:          assets.ModelConfig{Spec: "/m/resnet/model.onnx", SHA256: "ab12", Mirrors: []string{"/a", "/b"}},
			Gallery:        "/g/faces.gallery",
			RuntimeLib:     "/lib/libonnxruntime.so.1",
			RuntimeMirrors: []string{"/mirror"},
			Cache:          "/cache",
			Threads:        3,
			Command:        "python3 /models/sizes.py",
			StartTimeout:   5 * time.Second,
			RequestTimeout: 1500 * time.Millisecond,
		},
		// Empty settings are passed too, so that the defaults (a model
		// name, a cache) do not creep back in.
		{Model: assets.ModelConfig{Spec: "/m/x/model.onnx"}, Threads: 1},
	} {
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		got := Flags(fs)
		if err := fs.Parse(c.Args()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, c) {
			t.Errorf("parsed %+v\nfrom %q\nwant %+v", *got, c.Args(), c)
		}
	}
}
