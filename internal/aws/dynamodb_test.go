package aws_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/testenv"
)

// The adapter is tested against moto_server on loopback.

func TestTableContract(t *testing.T) {
	testenv.TableContract(t, func(t *testing.T) events.Table {
		tab, err := aws.CreateTable(context.Background(), moto.Clients(t).Dynamo, fmt.Sprintf("contract-%d-dynamoDB", serial.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return tab
	})
}

// A table deleted under a running system is an error on every call, not
// an empty table: the tiers fall back to the queue and say so.
func TestDeletedTableIsAnError(t *testing.T) {
	ctx := context.Background()
	c := moto.Clients(t)
	tab, err := aws.CreateTable(ctx, c.Dynamo, "deleted-dynamoDB")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dynamo.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: sdk.String(tab.Name())}); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Get(ctx, "a.jpg"); err == nil || errors.Is(err, events.ErrNoItem) {
		t.Fatalf("Get on a deleted table: %v; want an error other than ErrNotFound", err)
	}
	if err := tab.Put(ctx, events.Item{Name: "a.jpg", Label: "A"}); err == nil {
		t.Fatal("Put on a deleted table succeeded")
	}
}
