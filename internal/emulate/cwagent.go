package emulate

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/surgeml/surge/internal/aws"
)

// shipLogs stands in for the CloudWatch agent the boot script configured
// (it cannot run here): it follows the files the agent's configuration
// lists and puts their lines into CloudWatch Logs, one stream per file as
// the configuration names it, with the instance's own credentials.
func (in *instance) shipLogs(ctx context.Context) {
	var cfg struct {
		Logs struct {
			LogsCollected struct {
				Files struct {
					CollectList []struct {
						FilePath      string `json:"file_path"`
						LogGroupName  string `json:"log_group_name"`
						LogStreamName string `json:"log_stream_name"`
					} `json:"collect_list"`
				} `json:"files"`
			} `json:"logs_collected"`
		} `json:"logs"`
	}
	raw, err := os.ReadFile(in.agentConfig())
	if err == nil {
		err = json.Unmarshal(raw, &cfg)
	}
	if err != nil {
		in.log.Error("CloudWatch agent configuration", "err", err)
		return
	}
	c, err := aws.LoadClients(ctx, aws.Endpoint(in.m.endpoint, in.m.cfg.Region, in.id)...)
	if err != nil {
		in.log.Error("CloudWatch agent", "err", err)
		return
	}
	logs := cloudwatchlogs.NewFromConfig(c.Config)
	type follower struct {
		file, group, stream string
		offset              int64
		created             bool
	}
	var files []*follower
	for _, f := range cfg.Logs.LogsCollected.Files.CollectList {
		files = append(files, &follower{
			file: in.path(f.FilePath), group: f.LogGroupName,
			stream: strings.ReplaceAll(f.LogStreamName, "{instance_id}", in.id),
		})
	}
	ship := func(f *follower) {
		file, err := os.Open(f.file)
		if err != nil {
			return
		}
		defer file.Close()
		file.Seek(f.offset, io.SeekStart)
		b, _ := io.ReadAll(io.LimitReader(file, 1<<20))
		end := bytes.LastIndexByte(b, '\n')
		if end < 0 {
			return
		}
		var events []cwtypes.InputLogEvent
		now := time.Now().UnixMilli()
		for _, line := range strings.Split(string(b[:end]), "\n") {
			events = append(events, cwtypes.InputLogEvent{Message: sdk.String(line), Timestamp: sdk.Int64(now)})
		}
		if !f.created {
			if _, err := logs.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: &f.group, LogStreamName: &f.stream}); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
				in.log.Warn("CloudWatch agent: creating log stream", "stream", f.stream, "err", err)
				return
			}
			f.created = true
		}
		if _, err := logs.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: &f.group, LogStreamName: &f.stream, LogEvents: events}); err != nil {
			in.log.Warn("CloudWatch agent: putting log events", "stream", f.stream, "err", err)
			return
		}
		f.offset += int64(end + 1)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The agent flushes what it has at shutdown.
			flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			ctx = flush
			for _, f := range files {
				ship(f)
			}
			cancel()
			return
		case <-t.C:
			for _, f := range files {
				ship(f)
			}
		}
	}
}
