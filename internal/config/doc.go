// Package config holds what every binary shares about settings: one
// naming scheme, every flag -x-y being also the environment variable
// SURGE_X_Y, with a malformed value an error that names it (env.go), and
// the loggers (logging.go). The flags themselves are registered by the
// packages they configure (backend, recognize, frontend, labeling). It
// imports nothing of Surge's, so the Lambdas build without cgo.
package config
