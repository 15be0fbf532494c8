package localrun

// WebPID is the web tier process's pid, for tests that act on it.
func WebPID(s *System) int { return s.web.cmd.Process.Pid }

// WebPeakRSS is the web tier's peak resident memory so far.
func WebPeakRSS(s *System) int64 { return s.web.PeakRSS() }
