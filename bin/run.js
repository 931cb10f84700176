#!/usr/bin/env node
// The `commvq` command line: oclif finds the compiled commands in dist/commands.
import { execute } from '@oclif/core';

await execute({ dir: import.meta.url });
