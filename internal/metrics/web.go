package metrics

// The web tier's EMF metric names (the CDK dashboard reads them).
const (
	EMFUploads       = "Uploads"       // uploads answered, whatever the answer
	EMFUploadErrors  = "UploadErrors"  // of those, answered 4xx or 5xx
	EMFUploadLatency = "UploadLatency" // from an upload's arrival to its answer
	EMFCachedAnswers = "CachedAnswers" // uploads answered from the results table
	EMFResultWait    = "ResultWait"    // how long results waited in the response queue
	// EMFOpenUploads is the uploads an instance holds, sampled: the web
	// group's target tracking scales on its average per instance.
	EMFOpenUploads = "OpenUploads"
)

// WebEMF are the web tier's EMF metrics.
func WebEMF() []Metric {
	return []Metric{
		{EMFUploads, Count}, {EMFUploadErrors, Count}, {EMFUploadLatency, Milliseconds},
		{EMFCachedAnswers, Count}, {EMFResultWait, Milliseconds}, {EMFOpenUploads, Gauge},
	}
}
