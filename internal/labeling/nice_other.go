//go:build !linux

package labeling

import "errors"

func lowerThreadPriority(int) error {
	return errors.New("per-thread priority is only set on Linux")
}
