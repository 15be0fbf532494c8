// Package embedded holds the stand-ins that let Surge run with no cloud,
// each behind the same interface from package events as its AWS
// counterpart: queues on SQLite with SQS's semantics (queue.go), the
// results table in an SQLite file (table.go), buckets as directories
// (bucket.go), the worker fleet as local processes (fleet.go, with the
// workers' side in reporter.go), and a directory lock so that one process
// owns a data directory (lock.go).
package embedded
