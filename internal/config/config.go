// This file registers the command-line flags the binaries share.
// Every flag defaults to an environment variable (see envvar).

package config

import (
	"os"
	"path/filepath"
	"strings"
)

// pathList is a colon-separated list of directories, like $PATH.
type pathList struct{ dst *[]string }

// NewPathList is a flag.Value for a colon-separated list of directories,
// starting with the value of the environment variable env.
func NewPathList(dst *[]string, env string) pathList {
	l := pathList{dst}
	l.Set(os.Getenv(env))
	return l
}

func (l pathList) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ":")
}

func (l pathList) Set(s string) error {
	*l.dst = nil
	for _, p := range strings.Split(s, ":") {
		if p != "" {
			*l.dst = append(*l.dst, p)
		}
	}
	return nil
}

// DefaultCache is the download cache when none is given.
func DefaultCache() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "surge")
	}
	return ".cache"
}
