package app

import "github.com/aws/aws-lambda-go/events"

type (
	eventV2    = events.APIGatewayV2HTTPRequest
	responseV2 = events.APIGatewayV2HTTPResponse
)
