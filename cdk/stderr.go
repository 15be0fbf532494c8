package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// jsii-runtime-go (v1.140.0, and aws/jsii's main branch as of August 2026)
// waits for its node child twice at once: in a goroutine it starts with
// the child, and in Close. Go reaps a child through its pidfd, so only one
// wait gets the exit status; when Close's wins, the goroutine's gets
// ECHILD and prints "Runtime process exited abnormally: waitid: no child
// processes" (without a newline), although node exited 0 at Close's
// request. About every other synth ended so. Nothing outside the runtime
// can make its goroutine win, so the app drops exactly that report from
// its stderr: a child that really died (a signal, an exit status) is
// still reported.
const falseExitReport = "Runtime process exited abnormally: "

// falseExits are the runtime's reports of a child its own Close reaped:
// ECHILD from the pidfd wait, or from the wait of a Go without pidfds.
func falseExits() []string {
	return []string{falseExitReport + "waitid: no child processes", falseExitReport + "wait: no child processes"}
}

// quietJsiiStderr routes os.Stderr through a pipe that drops the
// runtime's false exit reports. It must run before the first jsii call
// starts the runtime, whose goroutines read os.Stderr when they write.
// The function it returns closes the pipe and waits until everything
// written to it is out; os.Stderr stays the closed pipe, since the
// runtime's goroutine may still read it.
func quietJsiiStderr() (func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("making stderr's filter: %w", err)
	}
	stderr := os.Stderr
	os.Stderr = w
	done := make(chan struct{})
	go func() {
		defer close(done)
		dropFalseExits(stderr, r)
	}()
	return func() {
		w.Close()
		<-done
	}, nil
}

// dropFalseExits copies in to out a line at a time, less the runtime's
// false exit reports, which may run into the next line.
func dropFalseExits(out io.Writer, in io.Reader) {
	lines := bufio.NewReader(in)
	for {
		line, err := lines.ReadString('\n')
		for _, report := range falseExits() {
			line = strings.ReplaceAll(line, report, "")
		}
		if line != "" {
			io.WriteString(out, line)
		}
		if err != nil {
			return
		}
	}
}
