package ort

// LoadAPI is Load asking for another C API version than Surge's.
func LoadAPI(lib string, version uint32) (*Runtime, error) { return load(lib, version) }

// Env is the runtime's OrtEnv.
func (r *Runtime) Env() uintptr { return r.env }
