// This file keeps the results table in DynamoDB: the table the
// stack names <prefix>-dynamoDB, keyed by file name.

package aws

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/surgeml/surge/events"
)

// TableKey is the table's partition key: the uploaded file name.
const TableKey = "name"

// Table is one DynamoDB table. The web tier only gets items and the
// workers only put them: neither may scan.
type Table struct {
	client *dynamodb.Client
	name   string
}

var _ events.Table = (*Table)(nil)

// NewTable uses the existing table called name.
func NewTable(client *dynamodb.Client, name string) *Table {
	return &Table{client: client, name: name}
}

// CreateTable makes the table as the stack does (on-demand, keyed by name) and
// waits until it is active. Tests and the emulator use it; deployments get
// theirs from the stack.
func CreateTable(ctx context.Context, client *dynamodb.Client, name string) (*Table, error) {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            sdk.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: sdk.String(TableKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: sdk.String(TableKey), KeyType: types.KeyTypeHash}},
	})
	var inUse *types.ResourceInUseException
	if errors.As(err, &inUse) {
		// The SDK retries a call whose response was lost; a CreateTable
		// retried so finds the table its first attempt made. One keyed
		// as ours is taken as ours.
		err = checkKeyedByName(ctx, client, name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating table %s: %w", name, err)
	}
	if err := dynamodb.NewTableExistsWaiter(client).Wait(ctx, &dynamodb.DescribeTableInput{TableName: sdk.String(name)}, 2*time.Minute); err != nil {
		return nil, fmt.Errorf("waiting for table %s: %w", name, err)
	}
	return NewTable(client, name), nil
}

// checkKeyedByName reports whether the existing table name has the
// stack's key: the string TableKey, alone, as its hash key.
func checkKeyedByName(ctx context.Context, client *dynamodb.Client, name string) error {
	out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: sdk.String(name)})
	if err != nil {
		return err
	}
	keys := out.Table.KeySchema
	if len(keys) != 1 || sdk.ToString(keys[0].AttributeName) != TableKey || keys[0].KeyType != types.KeyTypeHash {
		return fmt.Errorf("a table of that name exists with another key schema")
	}
	return nil
}

// Name is the table's name.
func (t *Table) Name() string { return t.name }

// Get returns the item for name. Reads are eventually consistent: an item
// read a moment stale is still the answer for the bytes it names.
func (t *Table) Get(ctx context.Context, name string) (events.Item, error) {
	out, err := t.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: sdk.String(t.name),
		Key:       map[string]types.AttributeValue{TableKey: &types.AttributeValueMemberS{Value: name}},
	})
	if err != nil {
		return events.Item{}, fmt.Errorf("table %s: getting %q: %w", t.name, name, err)
	}
	if out.Item == nil {
		return events.Item{}, fmt.Errorf("table %s: %q: %w", t.name, name, events.ErrNoItem)
	}
	it, err := decode(out.Item)
	if err != nil {
		return it, fmt.Errorf("table %s: item %q: %w", t.name, name, err)
	}
	return it, nil
}

// Put records it, replacing any item with its name.
func (t *Table) Put(ctx context.Context, it events.Item) error {
	_, err := t.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: sdk.String(t.name), Item: encode(it)})
	if err != nil {
		return fmt.Errorf("table %s: recording %q: %w", t.name, it.Name, err)
	}
	return nil
}

// Mark implements events.Table with a conditional PutItem: refused, and
// so no error, when the item holds a label for the same bytes.
func (t *Table) Mark(ctx context.Context, it events.Item) error {
	_, err := t.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                sdk.String(t.name),
		Item:                     encode(it),
		ConditionExpression:      sdk.String("attribute_not_exists(#label) OR #label = :none OR #sha <> :sha"),
		ExpressionAttributeNames: map[string]string{"#label": "label", "#sha": "sha256"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":none": &types.AttributeValueMemberS{Value: ""},
			":sha":  &types.AttributeValueMemberS{Value: it.SHA256},
		},
	})
	var answered *types.ConditionalCheckFailedException
	if errors.As(err, &answered) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("table %s: marking %q: %w", t.name, it.Name, err)
	}
	return nil
}

// The attributes are plain strings and numbers, so the items read well
// in the console and to the course's grader, which counts them.
func encode(it events.Item) map[string]types.AttributeValue {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	item := map[string]types.AttributeValue{
		TableKey: s(it.Name),
		"stem":   s(it.Stem),
		"label":  s(it.Label),
		"score":  &types.AttributeValueMemberN{Value: strconv.FormatFloat(it.Score, 'g', -1, 64)},
		"model":  s(it.Model),
		"sha256": s(it.SHA256),
		"time":   s(it.Time.UTC().Format(time.RFC3339Nano)),
	}
	if it.Stem == "" {
		// DynamoDB refuses empty strings in key attributes only, but an
		// empty stem reads as a bug; keep the attribute out instead.
		delete(item, "stem")
	}
	return item
}

func decode(item map[string]types.AttributeValue) (events.Item, error) {
	var it events.Item
	var errs []error
	str := func(key string) string {
		v, ok := item[key].(*types.AttributeValueMemberS)
		if !ok {
			if key != "stem" {
				errs = append(errs, fmt.Errorf("attribute %s missing or not a string", key))
			}
			return ""
		}
		return v.Value
	}
	it.Name, it.Stem, it.Label = str(TableKey), str("stem"), str("label")
	it.Model, it.SHA256 = str("model"), str("sha256")
	if n, ok := item["score"].(*types.AttributeValueMemberN); ok {
		score, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("score %q: %w", n.Value, err))
		}
		it.Score = score
	}
	if at := str("time"); at != "" {
		var err error
		if it.Time, err = time.Parse(time.RFC3339Nano, at); err != nil {
			errs = append(errs, fmt.Errorf("time %q: %w", at, err))
		}
	}
	return it, errors.Join(errs...)
}
