package dynamotable_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/surgeml/surge/internal/awstest"
	"github.com/surgeml/surge/internal/dynamotable"
	"github.com/surgeml/surge/internal/results"
	"github.com/surgeml/surge/internal/results/resultstest"
)

// The adapter is tested against moto_server on loopback.
func TestMain(m *testing.M) { awstest.Main(m) }

var serial atomic.Int32

func TestContract(t *testing.T) {
	resultstest.Run(t, func(t *testing.T) results.Table {
		tab, err := dynamotable.Create(context.Background(), awstest.Clients(t).Dynamo, fmt.Sprintf("contract-%d-dynamoDB", serial.Add(1)))
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
	c := awstest.Clients(t)
	tab, err := dynamotable.Create(ctx, c.Dynamo, "deleted-dynamoDB")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dynamo.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(tab.Name())}); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Get(ctx, "a.jpg"); err == nil || errors.Is(err, results.ErrNotFound) {
		t.Fatalf("Get on a deleted table: %v; want an error other than ErrNotFound", err)
	}
	if err := tab.Put(ctx, results.Item{Name: "a.jpg", Label: "A"}); err == nil {
		t.Fatal("Put on a deleted table succeeded")
	}
}
