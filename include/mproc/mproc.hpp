// mproc.hpp — everything: process-based parallelism for C++.
#pragma once

#include "mproc/codec.hpp"
#include "mproc/errors.hpp"
#include "mproc/executor.hpp"
#include "mproc/future.hpp"
#include "mproc/initializer.hpp"
#include "mproc/log.hpp"
#include "mproc/manager.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/result.hpp"
#include "mproc/shared.hpp"
#include "mproc/sync.hpp"
