// Counts heap allocations made by the calling thread between start and stop: how tests check
// that a steady-state step allocates nothing (ARCHITECTURE.md, *Testing*).
#pragma once

/// Starts counting this thread's malloc, calloc, realloc and aligned allocations from zero.
void allocation_counter_start(void);
/// Stops counting; returns how many allocations this thread made since the start.
long allocation_counter_stop(void);
