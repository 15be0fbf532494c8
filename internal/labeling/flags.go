package labeling

import (
	"flag"
	"time"
)

// defaultWait is SQS's longest long poll.
const defaultWait = 20 * time.Second

// Flags registers the flags that set a worker's name, concurrency and
// inferences (by default from the instance's cores), wait and idle exit, and returns the Config they fill. Visibility and
// MaxReceives are the request queue's, set with it.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Name, "name", "", "instance name reported in results (default: on EC2 the instance's Name tag, else the host name)")
	fs.IntVar(&c.Inferences, "inferences", 0, "images decoded and recognised at once (0: GOMAXPROCS, one per core)")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "requests held at once, so downloads, uploads and queue calls overlap inference (0: 32 per inference)")
	fs.IntVar(&c.InferenceNice, "inference-nice", 0, "niceness of decoding and inference, for workers sharing a machine with the web tier (0: unchanged)")
	fs.DurationVar(&c.Wait, "wait", defaultWait, "long-poll wait")
	fs.DurationVar(&c.IdleExit, "idle-shutdown", 0, "leave after this long without work; on EC2, terminate this instance (0: never)")
	return c
}
