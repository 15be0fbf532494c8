package config

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"port":          "SURGE_PORT",
		"max-workers":   "SURGE_MAX_WORKERS",
		"model-sha256":  "SURGE_MODEL_SHA256",
		"num_request":   "SURGE_NUM_REQUEST",
		"idle-shutdown": "SURGE_IDLE_SHUTDOWN",
	} {
		if got := EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

// settings is a flag set with one flag of each kind the binaries use.
type settings struct {
	host    string
	port    int
	wait    time.Duration
	reuse   bool
	maxSize int64
}

func (s *settings) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	fs.StringVar(&s.host, "host", "", "")
	fs.IntVar(&s.port, "port", 8000, "")
	fs.DurationVar(&s.wait, "wait", 20*time.Second, "")
	fs.BoolVar(&s.reuse, "reuse-answers", true, "")
	fs.Int64Var(&s.maxSize, "max-upload", 10<<20, "")
	return fs
}

func TestParse(t *testing.T) {
	defaults := settings{port: 8000, wait: 20 * time.Second, reuse: true, maxSize: 10 << 20}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    settings
		wantErr []string // substrings of the error; nil for none
	}{
		{name: "defaults", want: defaults},
		{
			name: "environment applies when the flag is not given",
			env:  map[string]string{"SURGE_HOST": "127.0.0.1", "SURGE_PORT": "9000", "SURGE_WAIT": "1s", "SURGE_REUSE_ANSWERS": "false", "SURGE_MAX_UPLOAD": "1024"},
			want: settings{host: "127.0.0.1", port: 9000, wait: time.Second, reuse: false, maxSize: 1024},
		},
		{
			name: "a flag given wins",
			args: []string{"-port", "8080", "-reuse-answers=true", "-wait", "3s"},
			env:  map[string]string{"SURGE_PORT": "9000", "SURGE_REUSE_ANSWERS": "false", "SURGE_WAIT": "1s", "SURGE_HOST": "::1"},
			want: settings{host: "::1", port: 8080, wait: 3 * time.Second, reuse: true, maxSize: 10 << 20},
		},
		{
			name: "a flag given wins even when its variable is malformed",
			args: []string{"-port", "8080"},
			env:  map[string]string{"SURGE_PORT": "abc"},
			want: settings{port: 8080, wait: 20 * time.Second, reuse: true, maxSize: 10 << 20},
		},
		{
			name: "empty variables are unset",
			env:  map[string]string{"SURGE_PORT": "", "SURGE_WAIT": ""},
			want: defaults,
		},
		{
			name: "unknown and unprefixed variables are ignored",
			env:  map[string]string{"SURGE_SHARED": "/x", "SURGE_LOG_LEVEL": "debug", "PORT": "9000", "HOST": "x", "surge_port": "1"},
			want: defaults,
		},
		{
			name:    "malformed int",
			env:     map[string]string{"SURGE_PORT": "abc"},
			wantErr: []string{`SURGE_PORT="abc": invalid value for -port: parse error`},
		},
		{
			name:    "int out of range",
			env:     map[string]string{"SURGE_MAX_UPLOAD": "99999999999999999999"},
			wantErr: []string{`SURGE_MAX_UPLOAD="99999999999999999999": invalid value for -max-upload`},
		},
		{
			name:    "malformed duration",
			env:     map[string]string{"SURGE_WAIT": "20"},
			wantErr: []string{`SURGE_WAIT="20": invalid value for -wait`},
		},
		{
			name:    "malformed bool",
			env:     map[string]string{"SURGE_REUSE_ANSWERS": "nope"},
			wantErr: []string{`SURGE_REUSE_ANSWERS="nope": invalid value for -reuse-answers`},
		},
		{
			name:    "every malformed variable is named",
			env:     map[string]string{"SURGE_PORT": "x", "SURGE_WAIT": "y", "SURGE_HOST": "fine"},
			wantErr: []string{"SURGE_PORT=", "SURGE_WAIT="},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got settings
			fs := got.flags()
			err := Parse(fs, c.args, func(k string) string { return c.env[k] })
			if c.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; settings %+v", got)
				}
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseKeepsArgumentErrorsAndPositionals(t *testing.T) {
	var s settings
	fs := s.flags()
	if err := Parse(fs, []string{"-port", "x"}, nil); err == nil || strings.Contains(err.Error(), "SURGE_") {
		t.Errorf("a malformed flag: %v", err)
	}
	fs = s.flags()
	if err := Parse(fs, []string{"-port", "1", "a.jpg", "b.jpg"}, func(string) string { return "" }); err != nil || fs.NArg() != 2 || s.port != 1 {
		t.Errorf("err %v, args %q, port %d", err, fs.Args(), s.port)
	}
}

func TestParseHelpNamesTheScheme(t *testing.T) {
	var s settings
	fs := s.flags()
	var out bytes.Buffer
	fs.SetOutput(&out)
	if err := Parse(fs, []string{"-h"}, nil); err != flag.ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(out.String(), "-max-upload") || !strings.Contains(out.String(), "SURGE_X_Y") {
		t.Errorf("help:\n%s", out.String())
	}
}
