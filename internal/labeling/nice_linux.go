package labeling

import "syscall"

// lowerThreadPriority sets the calling thread's niceness: on Linux a
// thread's, not the whole process's, so only inference yields.
func lowerThreadPriority(nice int) error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}
