// Package config is where settings become running parts: the flags the
// binaries share with one naming scheme for their environment variables
// (config.go, envvar.go), the loggers (logging.go), and opening the queues,
// buckets, results table and fleet a tier runs on, embedded or on AWS, by
// the names a prefix gives (backend.go). It is the one package that knows
// every backend; the tiers see only the interfaces they declare.
package config
