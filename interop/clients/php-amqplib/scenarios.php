<?php
// php-amqplib scenarios for Warren's interop suite: one JSON line per scenario.
require '/usr/share/php/PhpAmqpLib/autoload.php';
use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;
use PhpAmqpLib\Exception\AMQPProtocolChannelException;

$U = parse_url(getenv('INTEROP_URL') ?: 'amqp://guest:guest@127.0.0.1:5672/%2f');
$P = getenv('INTEROP_PREFIX') ?: 'it.php';
const LARGE_LEN = 5 * 1024 * 1024 + 7;

class Mismatch extends Exception { public $obs; function __construct($m, $o) { parent::__construct($m); $this->obs = $o; } }
function expect($obs, $want) {
    $bad = [];
    foreach ($want as $k => $v) if (json_encode($obs[$k] ?? null) !== json_encode($v)) $bad[] = "$k=" . json_encode($obs[$k] ?? null) . " (want " . json_encode($v) . ")";
    if ($bad) throw new Mismatch('unexpected ' . implode('; ', $bad), $obs);
    return $obs;
}
function run($name, $f) {
    try { $obs = $f(); echo json_encode(['scenario' => $name, 'ok' => true, 'obs' => $obs, 'err' => '']), "\n"; }
    catch (Mismatch $e) { echo json_encode(['scenario' => $name, 'ok' => false, 'obs' => $e->obs, 'err' => $e->getMessage()]), "\n"; }
    catch (Throwable $e) { echo json_encode(['scenario' => $name, 'ok' => false, 'obs' => null, 'err' => get_class($e) . ': ' . $e->getMessage()]), "\n"; }
}
function na($name, $why) { echo json_encode(['scenario' => $name, 'ok' => true, 'skip' => true, 'obs' => null, 'err' => $why]), "\n"; }
function conn($pass = null) {
    global $U;
    return new AMQPStreamConnection($U['host'], $U['port'], $U['user'], $pass ?? $U['pass'], urldecode(ltrim($U['path'], '/')));
}
function drain($ch, $q) { $out = []; while ($m = $ch->basic_get($q, true)) $out[] = $m->getBody(); return $out; }

run('connect', function () {
    $c = conn(); $ch = $c->channel();
    $caps = $c->getServerProperties()['capabilities'][1] ?? [];
    $on = []; foreach ($caps as $k => $v) if ($v[1] === true) $on[] = $k; sort($on);
    $obs = ['open' => $ch->is_open(), 'capabilities' => $on]; $c->close(); return $obs;
});
run('declare', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.declare";
    $r = $ch->queue_declare($q, false, false, false, false);
    foreach (['direct', 'fanout', 'topic', 'headers'] as $t) { $ch->exchange_declare("$P.x.$t", $t, false, false, false); $ch->exchange_declare("$P.x.$t", $t, true, false, false); }
    $ch->basic_publish(new AMQPMessage('1'), '', $q); $ch->basic_publish(new AMQPMessage('2'), '', $q); usleep(200000);
    $r2 = $ch->queue_declare($q, true); $d = $ch->queue_delete($q);
    foreach (['direct', 'fanout', 'topic', 'headers'] as $t) $ch->exchange_delete("$P.x.$t");
    $c->close();
    return expect(['declare_ok' => $r, 'passive_count' => $r2[1], 'delete_count' => $d], ['declare_ok' => [$q, 0, 0], 'passive_count' => 2, 'delete_count' => 2]);
});
run('routing', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q1 = "$P.r1"; $q2 = "$P.r2";
    $ch->queue_declare($q1, false, false, false, false); $ch->queue_declare($q2, false, false, false, false);
    foreach (['direct', 'fanout', 'topic', 'headers'] as $t) $ch->exchange_declare("$P.rx.$t", $t, false, false, false);
    $ch->queue_bind($q1, "$P.rx.direct", 'a'); $ch->queue_bind($q2, "$P.rx.direct", 'b');
    $ch->queue_bind($q1, "$P.rx.fanout"); $ch->queue_bind($q2, "$P.rx.fanout");
    $ch->queue_bind($q1, "$P.rx.topic", 'x.*'); $ch->queue_bind($q2, "$P.rx.topic", 'x.#');
    $ch->queue_bind($q1, "$P.rx.headers", '', false, new AMQPTable(['x-match' => 'all', 'a' => 1, 'b' => 2]));
    $ch->queue_bind($q2, "$P.rx.headers", '', false, new AMQPTable(['x-match' => 'any', 'a' => 1, 'b' => 2]));
    foreach (['a', 'b', 'c'] as $k) $ch->basic_publish(new AMQPMessage("direct-$k"), "$P.rx.direct", $k);
    $ch->basic_publish(new AMQPMessage('fanout'), "$P.rx.fanout", 'zzz');
    foreach (['x.y', 'x.y.z', 'x'] as $k) $ch->basic_publish(new AMQPMessage("topic-$k"), "$P.rx.topic", $k);
    $ch->basic_publish(new AMQPMessage('headers-a', ['application_headers' => new AMQPTable(['a' => 1])]), "$P.rx.headers");
    $ch->basic_publish(new AMQPMessage('headers-ab', ['application_headers' => new AMQPTable(['a' => 1, 'b' => 2])]), "$P.rx.headers");
    usleep(200000);
    $obs = ['q1' => drain($ch, $q1), 'q2' => drain($ch, $q2)]; $c->close();
    return expect($obs, ['q1' => ['direct-a', 'fanout', 'topic-x.y', 'headers-ab'], 'q2' => ['direct-b', 'fanout', 'topic-x.y', 'topic-x.y.z', 'topic-x', 'headers-a', 'headers-ab']]);
});
$PROPS = ['content_type' => 'application/json', 'content_encoding' => 'utf-8', 'delivery_mode' => 2, 'priority' => 5, 'correlation_id' => 'corr-1',
          'reply_to' => 'rq', 'expiration' => '60000', 'message_id' => 'mid-1', 'timestamp' => 1700000000, 'type' => 't1', 'user_id' => 'guest', 'app_id' => 'interop'];
$HEADERS = ['s' => 'str', 'i' => 42, 'b' => true, 'n' => ['k' => 'v'], 'l' => [1, 'two']];
run('properties', function () use ($P, $PROPS, $HEADERS) {
    $c = conn(); $ch = $c->channel(); $q = "$P.props";
    $ch->queue_declare($q, false, false, false, false);
    $ch->basic_publish(new AMQPMessage('props-body', $PROPS + ['application_headers' => new AMQPTable($HEADERS)]), '', $q); usleep(100000);
    $m = $ch->basic_get($q, true); $c->close();
    $props = []; foreach ($PROPS as $k => $v) $props[$k] = $m->has($k) ? $m->get($k) : null;
    $props['headers'] = $m->get('application_headers')->getNativeData();
    $obs = ['body' => $m->getBody(), 'exchange' => $m->getExchange(), 'routing_key' => $m->getRoutingKey(), 'redelivered' => $m->isRedelivered(),
            'message_count' => $m->getMessageCount(), 'props' => $props];
    return expect($obs, ['body' => 'props-body', 'props' => $PROPS + ['headers' => $HEADERS]]);
});
run('consume_prefetch', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.prefetch";
    $ch->queue_declare($q, false, false, false, false); $ch->basic_qos(0, 2, false);
    for ($i = 0; $i < 5; $i++) $ch->basic_publish(new AMQPMessage("m$i"), '', $q);
    $got = [];
    $ch->basic_consume($q, '', false, false, false, false, function ($m) use (&$got) { $got[] = $m; });
    $end = microtime(true) + 5;
    while (count($got) < 2 && microtime(true) < $end) { try { $ch->wait(null, false, 0.2); } catch (Exception $e) {} }
    try { $ch->wait(null, false, 0.4); } catch (Exception $e) {}
    $before = count($got); $acked = 0;
    while ($acked < 5 && microtime(true) < $end + 5) {
        while ($acked < count($got)) { $got[$acked]->ack(); $acked++; }
        if ($acked < 5) { try { $ch->wait(null, false, 0.2); } catch (Exception $e) {} }
    }
    $obs = ['before_ack' => $before, 'bodies' => array_map(fn($m) => $m->getBody(), $got), 'redelivered' => array_map(fn($m) => $m->isRedelivered(), $got)];
    $c->close();
    return expect($obs, ['before_ack' => 2, 'bodies' => ['m0', 'm1', 'm2', 'm3', 'm4']]);
});
run('get', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.get";
    $ch->queue_declare($q, false, false, false, false);
    for ($i = 0; $i < 3; $i++) $ch->basic_publish(new AMQPMessage("g$i"), '', $q); usleep(100000);
    $seq = [];
    for ($i = 0; $i < 3; $i++) { $m = $ch->basic_get($q); $seq[] = [$m->getBody(), $m->getMessageCount(), $m->isRedelivered()]; $m->ack(); }
    $empty = $ch->basic_get($q) === null; $c->close();
    return expect(['gets' => $seq, 'empty' => $empty], ['gets' => [['g0', 2, false], ['g1', 1, false], ['g2', 0, false]], 'empty' => true]);
});
run('nack_requeue', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.nack";
    $ch->queue_declare($q, false, false, false, false);
    $ch->basic_publish(new AMQPMessage('n1'), '', $q); $ch->basic_publish(new AMQPMessage('n2'), '', $q); usleep(100000);
    $seq = [];
    $m = $ch->basic_get($q); $seq[] = [$m->getBody(), $m->isRedelivered()]; $m->nack(true);
    $m = $ch->basic_get($q); $seq[] = [$m->getBody(), $m->isRedelivered()]; $m->reject(false);
    $m = $ch->basic_get($q); $seq[] = [$m->getBody(), $m->isRedelivered()]; $m->nack(false);
    $empty = $ch->basic_get($q) === null; $c->close();
    return expect(['seq' => $seq, 'empty' => $empty], ['seq' => [['n1', false], ['n1', true], ['n2', false]], 'empty' => true]);
});
run('confirms', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.confirms";
    $ch->queue_declare($q, false, false, false, false); $ch->confirm_select();
    $acked = 0; $nacked = 0;
    $ch->set_ack_handler(function ($m) use (&$acked) { $acked++; });
    $ch->set_nack_handler(function ($m) use (&$nacked) { $nacked++; });
    for ($i = 0; $i < 10; $i++) $ch->basic_publish(new AMQPMessage("c$i"), '', $q);
    $ch->wait_for_pending_acks(5);
    $r = $ch->queue_declare($q, true); $c->close();
    return expect(['acked' => $acked, 'nacked' => $nacked, 'count' => $r[1]], ['acked' => 10, 'nacked' => 0, 'count' => 10]);
});
run('mandatory', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $rets = [];
    $ch->set_return_listener(function ($code, $text, $ex, $rk, $m) use (&$rets) { $rets[] = ['reply_code' => $code, 'reply_text' => $text, 'exchange' => $ex, 'routing_key' => $rk, 'body' => $m->getBody()]; });
    $ch->confirm_select();
    $ch->basic_publish(new AMQPMessage('ret'), '', "$P.nowhere", true);
    $ch->wait_for_pending_acks_returns(5);
    $c->close();
    return expect(['returns' => $rets], ['returns' => [['reply_code' => 312, 'reply_text' => 'NO_ROUTE', 'exchange' => '', 'routing_key' => "$P.nowhere", 'body' => 'ret']]]);
});
na('competing', 'php-amqplib is single-threaded; competing consumers are covered by the other clients');
run('rpc', function () use ($P) {
    $c = conn(); $srv = $c->channel(); $cli = $c->channel(); $q = "$P.rpc";
    $srv->queue_declare($q, false, false, false, false);
    $srv->basic_consume($q, '', false, false, false, false, function ($m) use ($srv) {
        $srv->basic_publish(new AMQPMessage('reply:' . $m->getBody(), ['correlation_id' => $m->get('correlation_id')]), '', $m->get('reply_to')); $m->ack(); });
    [$rq] = $cli->queue_declare('', false, false, true, false); $replies = [];
    $cli->basic_consume($rq, '', false, true, false, false, function ($m) use (&$replies) { $replies[] = [$m->get('correlation_id'), $m->getBody()]; });
    $cli->basic_publish(new AMQPMessage('ping', ['reply_to' => $rq, 'correlation_id' => 'c-1']), '', $q);
    $end = microtime(true) + 5;
    while (!$replies && microtime(true) < $end) { try { $c->select(0, 100000); $srv->wait(null, true, 0.05); $cli->wait(null, true, 0.05); } catch (Exception $e) {} }
    $c->close();
    return expect(['reply_queue' => $rq, 'replies' => $replies], ['reply_queue' => str_starts_with($rq, 'amq.gen-') ? $rq : 'amq.gen-?', 'replies' => [['c-1', 'reply:ping']]]);
});
run('large', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.large";
    $ch->queue_declare($q, false, false, false, false);
    $unit = ''; for ($i = 0; $i < 251; $i++) $unit .= chr(($i * 7 + 3) % 251);
    $body = str_repeat($unit, intdiv(LARGE_LEN, 251)) . str_repeat("\0", LARGE_LEN % 251);
    $ch->basic_publish(new AMQPMessage($body), '', $q);
    $m = null; $end = microtime(true) + 10;
    while (!$m && microtime(true) < $end) { $m = $ch->basic_get($q, true); if (!$m) usleep(50000); }
    $c->close();
    return expect(['len' => $m ? strlen($m->getBody()) : -1, 'sha256_ok' => $m && hash('sha256', $m->getBody()) === hash('sha256', $body)], ['len' => LARGE_LEN, 'sha256_ok' => true]);
});
run('err_404', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $obs = ['raised' => false];
    try { $ch->queue_declare("$P.missing", true); } catch (AMQPProtocolChannelException $e) { $obs = ['code' => $e->getCode(), 'text' => $e->getMessage()]; }
    $obs['conn_open'] = $c->isConnected(); $c->close();
    return expect($obs, ['code' => 404, 'text' => "NOT_FOUND - no queue '$P.missing' in vhost '/'", 'conn_open' => true]);
});
run('err_406', function () use ($P) {
    $c = conn(); $ch = $c->channel(); $q = "$P.q406"; $obs = ['raised' => false];
    $ch->queue_declare($q, false, false, false, false);
    try { $ch->queue_declare($q, false, true, false, false); } catch (AMQPProtocolChannelException $e) { $obs = ['code' => $e->getCode(), 'text' => $e->getMessage()]; }
    $c->channel()->queue_delete($q); $c->close();
    return expect($obs, ['code' => 406, 'text' => "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '$q' in vhost '/': received 'true' but current is 'false'"]);
});
run('err_403', function () {
    $obs = ['raised' => false];
    try { conn('wrong')->close(); } catch (Throwable $e) { $obs = ['error' => get_class($e), 'code' => $e->getCode(), 'text' => $e->getMessage()]; }
    return expect($obs, ['code' => 403]);
});
// vhost_user: the non-default user and vhost of interop/definitions.json, given in pieces.
run('vhost_user', function () use ($P, $U) {
    $user = getenv('INTEROP_APP_USER') ?: 'interop-app'; $pass = getenv('INTEROP_APP_PASS') ?: 'interop-app-secret';
    $vhost = getenv('INTEROP_APP_VHOST') ?: 'interop-app';
    $q = "interop.app.$P"; $denied = "$P.denied";
    $c = new AMQPStreamConnection($U['host'], $U['port'], $user, $pass, $vhost); $ch = $c->channel();
    $obs = ['declare_ok' => $ch->queue_declare($q, false, false, false, false)];
    $ch->basic_publish(new AMQPMessage('vhost-user'), '', $q);
    $m = null; $end = microtime(true) + 5;
    while (!$m && microtime(true) < $end) { $m = $ch->basic_get($q, true); if (!$m) usleep(50000); }
    $obs['got'] = $m ? $m->getBody() : null;
    $ch2 = $c->channel();
    try { $ch2->queue_declare($denied, false, false, false, false); $obs['refused_code'] = null; }
    catch (AMQPProtocolChannelException $e) { $obs['refused_code'] = $e->getCode(); $obs['refused_text'] = $e->getMessage(); }
    $obs['conn_open'] = $c->isConnected();
    $c->channel()->queue_delete($q); $c->close();
    try { (new AMQPStreamConnection($U['host'], $U['port'], $user, $pass, '/'))->close(); $obs['root_error'] = null; }
    catch (Throwable $e) { $obs['root_error'] = get_class($e); $obs['root_code'] = $e->getCode(); $obs['root_text'] = $e->getMessage(); }
    $tail = "access to queue '$denied' in vhost '$vhost' refused for user '$user'";
    if (!in_array($obs['refused_text'] ?? null, ["ACCESS_REFUSED - $tail", "ACCESS_REFUSED - configure $tail"], true))
        throw new Mismatch('refused_text ' . json_encode($obs['refused_text'] ?? null), $obs);
    return expect($obs, ['declare_ok' => [$q, 0, 0], 'got' => 'vhost-user', 'refused_code' => 403, 'conn_open' => true,
                         'root_error' => 'PhpAmqpLib\Exception\AMQPConnectionClosedException', 'root_code' => 530,
                         // php-amqplib appends the close's class and method ids: connection.open (10, 40)
                         'root_text' => "NOT_ALLOWED - access to vhost '/' refused for user '$user'(10, 40)"]);
});
