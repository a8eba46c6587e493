package invoke

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"
)

// AsyncInvoker starts a function asynchronously (followup.Invoker; e.g.
// shared/invoke's Invoker).
type AsyncInvoker interface {
	InvokeAsync(ctx context.Context, function string, payload []byte) error
}

// Schedule plays an EventBridge schedule rule (a function's event of Type
// Schedule in template.yaml, rate(N seconds)) for local runs: every Every,
// it invokes Function through Invoker asynchronously — EventBridge invokes
// a Lambda target with InvocationType Event — with the event EventBridge
// sends, {"version": "0", "id": …, "detail-type": "Scheduled Event",
// "source": "aws.events", "account": …, "time": …, "region": …,
// "resources": [the rule's ARN], "detail": {}}
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html).
// Give it an Invoker of the local invoke API (shared/invoke with the
// server's endpoint) so that the invocation takes the path EventBridge's
// does.
type Schedule struct {
	Function string
	Every    time.Duration
	Invoker  AsyncInvoker
	// Region and AccountID go into the event (us-east-1 and 123456789012
	// when empty); Rule names the rule (when empty, Function +
	// "FunctionSchedule", the logical id SAM gives the rule of a function
	// <Function>Function's event named Schedule).
	Region, AccountID, Rule string
	// Logger receives a line per failed invocation (slog.Default() when
	// nil).
	Logger *slog.Logger
}

// Run invokes the function every s.Every until ctx ends. The first
// invocation comes one period after the start, as with a rate expression.
// A failed invocation is logged and not repeated before the next period.
func (s Schedule) Run(ctx context.Context) {
	if s.Every <= 0 {
		return
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := s.Invoker.InvokeAsync(ctx, s.Function, s.Event(now)); err != nil && ctx.Err() == nil {
				log.Error("scheduled invocation failed", "function", s.Function, "err", err)
			}
		}
	}
}

// Event is the Scheduled Event EventBridge sends at time at.
func (s Schedule) Event(at time.Time) []byte {
	region, account, rule := s.Region, s.AccountID, s.Rule
	if region == "" {
		region = defaultRegion
	}
	if account == "" {
		account = defaultAccountID
	}
	if rule == "" {
		rule = s.Function + "FunctionSchedule"
	}
	b, _ := json.Marshal(events.EventBridgeEvent{
		Version: "0", ID: uuid.NewString(), DetailType: "Scheduled Event", Source: "aws.events",
		AccountID: account, Time: at.UTC().Truncate(time.Second), Region: region,
		Resources: []string{fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", region, account, rule)},
		Detail:    json.RawMessage(`{}`),
	})
	return b
}
