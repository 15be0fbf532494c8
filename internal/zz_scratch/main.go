package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/surgeml/surge/internal/emulate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := emulate.Config{DataDir: os.Args[1], Endpoint: "127.0.0.1:5055", TimeScale: 0.05, Account: emulate.Account{LambdaConcurrency: 10},
		CDK: "/work/main/.cache/aws-cdk/2.1149.0/aws-cdk-2.1149.0/package/bin/cdk", Repo: "/work/main"}
	f, _ := os.Create(os.Args[1] + "/emu.log")
	cloud, err := emulate.Start(ctx, cfg, slog.New(slog.NewJSONHandler(f, nil)))
	if err != nil {
		panic(err)
	}
	defer cloud.Stop(context.Background())
	fmt.Println(cloud.EnvLine())
	<-ctx.Done()
}
