package localrun

// WebPID is the first web tier's pid, for tests that act on it.
func WebPID(s *System) int { return s.web.tier(0).PID() }

// WebPeakRSS is the web tiers' peak resident memory so far.
func WebPeakRSS(s *System) int64 { return s.web.peakRSS() }
