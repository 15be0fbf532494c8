package localrun_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/testenv"
)

// chromium is the browser the page test drives; Debian's package puts it
// here.
const chromium = "chromium"

// The live page in a real browser against a real local system: photos set
// on its file input are answered on the page with the labels the course
// expects, and the fleet chart shows the workers that answered them, then
// keeps moving. The screenshot is kept as an artefact (go test -artifacts,
// or SURGE_PAGE_SCREENSHOT names the file).
func TestLivePageInChromium(t *testing.T) {
	dir := bin(t)
	browser, err := exec.LookPath(chromium)
	if err != nil {
		t.Fatalf("chromium (Debian package chromium) is required for the live page's browser test: apt-get install chromium (%v)", err)
	}
	gallery := testenv.EnrollFaces(t, dir)
	sys := start(t, 30*time.Second, "-gallery", gallery)
	expected := testenv.Labels(t, "datasets", "faces", "face_images_100.csv")
	files := testenv.Images(t, "datasets", "faces", "face_images_100")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.WindowSize(1280, 900),
		// Nothing but the page's own web tier on loopback.
		chromedp.ProxyServer("direct://"), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-domain-reliability", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	defer cancelBrowser()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(sys.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#watch")), // the first poll of the history came back
		chromedp.SetUploadFiles(chromedp.CSS("#file"), files),
	); err != nil {
		t.Fatalf("loading the page and picking %d photos: %v", len(files), err)
	}
	number := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return n
	}

	// Every photo answered on the page.
	for {
		answered := number(`Number(document.getElementById("summary").dataset.answered ?? 0)`)
		failed := number(`Number(document.getElementById("summary").dataset.failed ?? 0)`)
		if answered+failed == len(files) {
			if failed > 0 {
				t.Errorf("the page shows %d failed uploads", failed)
			}
			break
		}
		if err := chromedp.Do(ctx, chromedp.Sleep(200*time.Millisecond)); err != nil {
			t.Fatalf("waiting for the answers (%d answered, %d failed of %d): %v", answered, failed, len(files), err)
		}
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]struct{ Name, Label, Class string }](`[...document.querySelectorAll("#answers li")].map(li => ({
		Name: li.querySelector(".name").textContent, Label: li.querySelector(".label").textContent, Class: li.className}))`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(files) {
		t.Fatalf("%d answers on the page for %d photos", len(rows), len(files))
	}
	for _, r := range rows {
		stem, _, _ := strings.Cut(r.Name, ".")
		if want := expected[stem]; r.Label != want || r.Class != "ok" {
			t.Errorf("%s: the page shows %q (%s), want %q", r.Name, r.Label, r.Class, want)
		}
	}

	// The chart saw the workers, and keeps being updated.
	const points = `Number(document.getElementById("chart").dataset.points ?? 0)`
	const runningMax = `Number(document.getElementById("chart").dataset.runningMax ?? 0)`
	// The workers stay a scale-in delay past the last answer, and the web
	// tier samples every frontend.HistoryInterval.
	for deadline := time.Now().Add(3 * frontend.HistoryInterval); number(runningMax) <= 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the fleet chart never showed a running worker over %d samples", number(points))
		}
		if err := chromedp.Do(ctx, chromedp.Sleep(250*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	samples, peak := number(points), number(runningMax)
	for number(points) <= samples {
		if err := chromedp.Do(ctx, chromedp.Sleep(250*time.Millisecond)); err != nil {
			t.Fatalf("the chart stayed at %d samples: %v", samples, err)
		}
	}
	if most := number(`Number(document.getElementById("instances").dataset.most ?? 0)`); most < 1 {
		t.Errorf("the workers' table never listed a worker")
	}
	t.Logf("%d answers on the page; the chart peaked at %d running workers over %d samples", len(rows), peak, samples)

	// The screenshot shows the page after the run, without the photos'
	// thumbnails: the course's face set is not the project's to publish,
	// and docs/img/live-page.png is made from this.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#answers img").forEach(img => img.remove()), 0`)); err != nil {
		t.Fatal(err)
	}
	shot := screenshot(t, ctx)
	path := os.Getenv("SURGE_PAGE_SCREENSHOT")
	if path == "" {
		path = filepath.Join(t.ArtifactDir(), "live-page.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the page: %s", path)
}

func screenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return shot
}
