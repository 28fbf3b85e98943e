// Drives MCP Tasks (protocol 2025-11-25) against mcp-image-server with the official TypeScript SDK.
//
// Prints one JSON object per line on stdout; tests/tasks/test_tasks.py asserts on them.
// Server: stdio by default (spawns `$TASKS_PYTHON -m mcp_image_server` with PYTHONPATH=$TASKS_REPO and
// MCP_IMAGE_SAVE_DIR=$TASKS_SAVE_DIR), or Streamable HTTP when TASKS_SERVER_URL is set
// (TASKS_AUTH_TOKEN, if set, is sent as a bearer token).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CallToolResultSchema,
    LATEST_PROTOCOL_VERSION,
    TaskStatusNotificationSchema
} from '@modelcontextprotocol/sdk/types.js';

const FOX = { prompt: 'a red fox', resolution: '256x256' };
const SLOW = { prompt: 'slow', style: 'watercolor', resolution: '2048x2048', n: 4 };
const RELATED = 'io.modelcontextprotocol/related-task';
const REQUEST = { timeout: 60_000 };

const emit = (event, data = {}) => console.log(JSON.stringify({ event, ...data }));
const failure = error => ({ code: error?.code ?? null, message: String(error?.message ?? error) });
const summary = result => {
    const sc = result.structuredContent ?? {};
    return {
        isError: result.isError ?? false,
        status: sc.status ?? null,
        jobId: sc.job_id ?? null,
        images: (sc.images ?? []).length,
        structuredKeys: Object.keys(sc).sort(),
        contentTypes: (result.content ?? []).map(block => block.type),
        relatedTask: result._meta?.[RELATED]?.taskId ?? null
    };
};

// A hung server fails the run instead of blocking the test suite.
setTimeout(() => {
    emit('timeout');
    process.exit(3);
}, 90_000).unref();

function transport() {
    if (process.env.TASKS_SERVER_URL) {
        const token = process.env.TASKS_AUTH_TOKEN;
        const headers = token ? { Authorization: `Bearer ${token}` } : {};
        return new StreamableHTTPClientTransport(new URL(process.env.TASKS_SERVER_URL), { requestInit: { headers } });
    }
    return new StdioClientTransport({
        command: process.env.TASKS_PYTHON ?? 'python3',
        args: ['-m', 'mcp_image_server'],
        env: { PYTHONPATH: process.env.TASKS_REPO, MCP_IMAGE_SAVE_DIR: process.env.TASKS_SAVE_DIR },
        stderr: 'inherit'
    });
}

// Drains a callToolStream / requestStream, reporting each message; `onCreated` runs once the task exists.
async function drain(label, stream, onCreated = async () => {}) {
    let taskId = null;
    for await (const message of stream) {
        if (message.type === 'taskCreated') {
            taskId = message.task.taskId;
            emit('task_created', { label, task: message.task });
            await onCreated(taskId);
        } else if (message.type === 'taskStatus') {
            emit('task_status', { label, taskId, status: message.task.status, statusMessage: message.task.statusMessage });
        } else if (message.type === 'result') {
            emit('task_result', { label, taskId, ...summary(message.result) });
        } else {
            emit('task_error', { label, taskId, ...failure(message.error) });
        }
    }
    return taskId;
}

const client = new Client({ name: 'mcp-image-server-tasks-probe', version: '1.0.0' }, { capabilities: {} });
client.setNotificationHandler(TaskStatusNotificationSchema, notification => {
    const { taskId, status } = notification.params;
    emit('status_notification', { taskId, status });
});

await client.connect(transport());
emit('initialized', { requested: LATEST_PROTOCOL_VERSION, capabilities: client.getServerCapabilities() });

const { tools } = await client.listTools();
emit('tools', { execution: Object.fromEntries(tools.map(tool => [tool.name, tool.execution?.taskSupport ?? null])) });

// 1. A task that runs to completion: created, polled with tasks/get, result via tasks/result.
let progress = 0;
const onprogress = () => {
    progress += 1;
};
const fox = await drain(
    'fox',
    client.experimental.tasks.callToolStream({ name: 'generate_image', arguments: FOX }, CallToolResultSchema, {
        ...REQUEST,
        onprogress
    })
);
emit('progress', { label: 'fox', count: progress });
emit('get', { task: await client.experimental.tasks.getTask(fox, REQUEST) });
emit('result_again', summary(await client.experimental.tasks.getTaskResult(fox, CallToolResultSchema, REQUEST)));

// 2. The same tool called plainly (no task), for comparing result shapes.
emit('plain_result', summary(await client.callTool({ name: 'generate_image', arguments: FOX }, undefined, REQUEST)));

// 3. A slow task cancelled as soon as it exists; the stream then observes the cancelled status.
let cancelled = null;
const slow = await drain(
    'slow',
    client.experimental.tasks.callToolStream({ name: 'generate_image', arguments: SLOW }, CallToolResultSchema, REQUEST),
    async taskId => {
        cancelled = await client.experimental.tasks.cancelTask(taskId, REQUEST);
        emit('cancel', { taskId, status: cancelled.status, statusMessage: cancelled.statusMessage });
    }
);
try {
    await client.experimental.tasks.cancelTask(slow, REQUEST);
    emit('cancel_again', { ok: true });
} catch (error) {
    emit('cancel_again', { ok: false, ...failure(error) });
}

// 4. Listing, and the errors for an unknown task id.
const { tasks } = await client.experimental.tasks.listTasks(undefined, REQUEST);
emit('list', { tasks: tasks.map(task => ({ taskId: task.taskId, status: task.status })) });
for (const [label, call] of [
    ['get', id => client.experimental.tasks.getTask(id, REQUEST)],
    ['result', id => client.experimental.tasks.getTaskResult(id, CallToolResultSchema, REQUEST)],
    ['cancel', id => client.experimental.tasks.cancelTask(id, REQUEST)]
]) {
    try {
        await call('0'.repeat(32));
        emit('unknown', { label, ok: true });
    } catch (error) {
        emit('unknown', { label, ok: false, ...failure(error) });
    }
}

await client.close();
emit('done');
