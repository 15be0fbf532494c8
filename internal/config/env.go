// This file gives every flag an environment variable, so that a binary is
// configured the same way by flags in a shell and by the environment in a
// systemd unit's environment file or a Lambda function.

package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// EnvName is the environment variable of the flag -name: "max-workers"
// gives SURGE_MAX_WORKERS.
func EnvName(flagName string) string {
	return "SURGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envHelp ends every binary's -h.
const envHelp = "\nEvery flag -x-y may also be given as the environment variable SURGE_X_Y; a flag given wins.\n"

// Parse parses args into fs, then sets each flag not given in args from
// its variable (EnvName) through getenv, when that is set and not empty.
// A malformed value is an error naming the variable, never a silent
// default. Variables that name no flag are ignored: one environment
// file serves several binaries. A nil getenv reads no variables.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	usage := fs.Usage
	fs.Usage = func() {
		if usage != nil {
			usage()
		} else {
			fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		fmt.Fprint(fs.Output(), envHelp)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if getenv == nil {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		v := getenv(name)
		if given[f.Name] || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: invalid value for -%s: %w", name, v, f.Name, err))
		}
	})
	return errors.Join(errs...)
}
