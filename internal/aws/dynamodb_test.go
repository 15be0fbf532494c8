package aws_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

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

// CreateTable finds a table its own lost-and-retried call made (the same
// name and key) and takes it; a table of that name keyed otherwise is an
// error.
func TestCreateTableTwice(t *testing.T) {
	ctx := context.Background()
	c := moto.Clients(t)
	name := fmt.Sprintf("twice-%d-dynamoDB", serial.Add(1))
	for range 2 {
		if _, err := aws.CreateTable(ctx, c.Dynamo, name); err != nil {
			t.Fatal(err)
		}
	}
	other := fmt.Sprintf("other-%d-dynamoDB", serial.Add(1))
	if _, err := c.Dynamo.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            sdk.String(other),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: sdk.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: sdk.String("id"), KeyType: types.KeyTypeHash}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := aws.CreateTable(ctx, c.Dynamo, other); err == nil {
		t.Errorf("a table keyed by id was taken as ours")
	}
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
