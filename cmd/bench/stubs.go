package main

import "context"

func (e *env) watchersScenario(ctx context.Context, o opts, t *table) error { return nil }
