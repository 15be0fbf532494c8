package emulate

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Stand-in for another CPU: this machine runs only its own architecture's
// programs, so when an instance of another (a Graviton instance on an x86
// machine, say) has installed Surge's binaries and libraries for its own,
// the emulator puts this machine's builds of the same files in their
// place before the units start. What the instance downloaded is checked
// first: it must be for the instance's CPU. So the emulation shows that
// the stack ships each instance the files of its architecture; it cannot
// show those files running, which `make test-arm64` does under qemu.

// HostBuilds are this machine's builds of the files an instance installs,
// by file name (worker, webtier, libonnxruntime.so.1), for instances of
// another architecture.
type HostBuilds map[string]string

// machineOf maps Go's architectures to ELF's.
var machineOf = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// installedFor swaps the ELF files under dir (on the instance) that are
// not for this machine for the host builds of the same name, after
// checking that each was for the instance's own architecture, want (""
// takes whatever the instance installed). It returns what it swapped.
func (in *instance) installedFor(dir string, want elf.Machine) ([]string, error) {
	host := machineOf[runtime.GOARCH]
	var swapped []string
	err := filepath.WalkDir(in.path(dir), func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		f, err := elf.Open(path)
		if err != nil {
			return nil // not a program or library
		}
		machine := f.Machine
		f.Close()
		if machine == host {
			return nil
		}
		onInstance := "/" + strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(path, in.root)), "/")
		if want != elf.EM_NONE && machine != want {
			return fmt.Errorf("%s is for %v, but the instance is %v", onInstance, machine, want)
		}
		build, ok := in.m.cfg.HostBuilds[d.Name()]
		if !ok {
			return fmt.Errorf("%s is for %v, which this machine (%v) cannot run, and the emulator has no build of it for this machine", onInstance, machine, host)
		}
		b, err := os.ReadFile(build)
		if err != nil {
			return fmt.Errorf("the host build of %s: %w", d.Name(), err)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(path+".host", b, info.Mode().Perm()); err != nil {
			return err
		}
		if err := os.Rename(path+".host", path); err != nil {
			return err
		}
		swapped = append(swapped, fmt.Sprintf("%s (%v)", onInstance, machine))
		return nil
	})
	return swapped, err
}
