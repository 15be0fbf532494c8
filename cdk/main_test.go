package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// A synth that succeeds says nothing alarming. jsii-runtime-go's false
// "Runtime process exited abnormally: waitid: no child processes" ended
// about every other `make synth`; it comes of a race, so the synth runs
// several times.
func TestSynthStderrIsQuiet(t *testing.T) {
	testenv.SkipShort(t, "the CDK's jsii runtime (node)")
	modelDir, ortLib, _ := runtimeFiles(t)
	bin := filepath.Join(t.TempDir(), "cdk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the CDK app: %v\n%s", err, out)
	}
	outdir := t.TempDir()
	for run := 1; run <= 4; run++ {
		cmd := exec.Command(bin, "-c", "prefix=quiet", "-c", "allowedCidr=203.0.113.7/32", "-c", "modelDir="+modelDir, "-c", "ortLib="+ortLib)
		cmd.Dir = testenv.Root(t)
		cmd.Env = append(os.Environ(), "CDK_OUTDIR="+outdir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("synth %d: %v\n%s", run, err, stderr.String())
		}
		for _, alarming := range []string{"exited abnormally", "no child processes"} {
			if strings.Contains(stderr.String(), alarming) {
				t.Fatalf("synth %d succeeded, and its stderr says %q:\n%s", run, alarming, stderr.String())
			}
		}
	}
}

func TestDropFalseExits(t *testing.T) {
	for in, want := range map[string]string{
		"Bundling asset surge/WebBinary/Stage...\nRuntime process exited abnormally: waitid: no child processes":   "Bundling asset surge/WebBinary/Stage...\n",
		"Runtime process exited abnormally: wait: no child processes":                                              "",
		"Runtime process exited abnormally: waitid: no child processescould not clean up temporary directory: x\n": "could not clean up temporary directory: x\n",
		// A child that died is still reported.
		"Runtime process exited abnormally: signal: killed":  "Runtime process exited abnormally: signal: killed",
		"Runtime process exited abnormally: exit status 1\n": "Runtime process exited abnormally: exit status 1\n",
		"[Warning at /surge] no allowedCidr\n":               "[Warning at /surge] no allowedCidr\n",
		"":                                                   "",
	} {
		var out bytes.Buffer
		dropFalseExits(&out, strings.NewReader(in))
		if out.String() != want {
			t.Errorf("dropFalseExits(%q) = %q, want %q", in, out.String(), want)
		}
	}
}
