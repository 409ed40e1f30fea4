"""Fund collection and BNB transfer as pure rules (semantics.md, "Fund collection and BNB
transfer").

Collection moves positive futures wallet balances back into MARGIN.free; BNB in UM stays where it
is, because Binance keeps it there to pay UM fees. BNB transfer moves BNB between MARGIN.free and
UM on request.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from papi_sandbox import money
from papi_sandbox.ledger.model import (
    FUTURES_WALLETS,
    Balances,
    InsufficientBalance,
    LedgerError,
    Posting,
    Wallet,
    is_balanced,
)

#: The asset Binance keeps in UM to pay fees: auto-collection leaves it, asset collection refuses
#: it.
FEE_ASSET = "BNB"


class AssetNotCollectable(LedgerError):
    """Asset collection was asked for an asset it does not collect (BNB)."""


class TransferSide(StrEnum):
    TO_UM = "TO_UM"
    FROM_UM = "FROM_UM"


def plan_collection(account_id: int, balances: Balances, asset: str | None = None) -> list[Posting]:
    """Move every positive UM and CM walletBalance into MARGIN.free (one asset when ``asset`` is
    given). BNB in UM is never collected; asking for BNB by asset raises
    :class:`AssetNotCollectable`. Nothing to move returns ``[]`` (a success that writes nothing)."""
    if asset == FEE_ASSET:
        raise AssetNotCollectable(
            f"{FEE_ASSET} is not collected: it stays in UM to pay fees; use the BNB transfer"
        )
    postings: list[Posting] = []
    for (wallet, wallet_asset), amount in sorted(balances.items()):
        if wallet not in FUTURES_WALLETS or amount <= 0:
            continue
        if asset is not None and wallet_asset != asset:
            continue
        if wallet is Wallet.UM and wallet_asset == FEE_ASSET:
            continue
        postings.append(Posting(account_id, wallet, wallet_asset, -amount))
        postings.append(Posting(account_id, Wallet.MARGIN, wallet_asset, amount))
    assert is_balanced(postings)
    return postings


def plan_partial_collection(
    account_id: int, balances: Balances, asset: str, amount: Decimal, wallet: Wallet
) -> list[Posting]:
    """Asset collection with ``amount`` and ``futureType``: move exactly ``amount`` of ``asset``
    from that futures wallet into MARGIN.free. More than its positive balance raises
    :class:`InsufficientBalance` (-2018); BNB raises :class:`AssetNotCollectable`."""
    if asset == FEE_ASSET:
        raise AssetNotCollectable(
            f"{FEE_ASSET} is not collected: it stays in UM to pay fees; use the BNB transfer"
        )
    if wallet not in FUTURES_WALLETS:
        raise LedgerError("futureType must be UM or CM")
    if amount <= 0:
        raise LedgerError("amount must be positive")
    available = balances.get((wallet, asset), money.ZERO)
    if amount > available:
        raise InsufficientBalance(f"{wallet.value} holds {max(available, money.ZERO)} {asset}")
    return [
        Posting(account_id, wallet, asset, -amount),
        Posting(account_id, Wallet.MARGIN, asset, amount),
    ]


def plan_bnb_transfer(
    account_id: int, balances: Balances, amount: Decimal, side: TransferSide
) -> list[Posting]:
    """``TO_UM``: MARGIN.free -> UM; ``FROM_UM``: a positive UM balance -> MARGIN.free.
    More than is there raises :class:`InsufficientBalance` (-2018)."""
    if amount <= 0:
        raise LedgerError("amount must be positive")
    source, target = (
        (Wallet.MARGIN, Wallet.UM) if side is TransferSide.TO_UM else (Wallet.UM, Wallet.MARGIN)
    )
    available = balances.get((source, FEE_ASSET), money.ZERO)
    if amount > available:
        raise InsufficientBalance(f"{source.value} holds {available} {FEE_ASSET}")
    postings = [
        Posting(account_id, source, FEE_ASSET, -amount),
        Posting(account_id, target, FEE_ASSET, amount),
    ]
    assert is_balanced(postings)
    return postings
