// Package config is where settings become running parts: one naming
// scheme for settings, every flag -x-y being also the environment
// variable SURGE_X_Y, with a malformed value an error that names it
// (env.go); the loggers (logging.go); and the backend flags and opening
// the queues, buckets, results table and fleet a tier runs on, embedded or
// on AWS, by the names a prefix gives (backend.go). It is the one package
// that knows every backend; the tiers see only the interfaces they
// declare. Flags that configure one package are registered by that
// package (recognize, frontend, labeling).
package config
