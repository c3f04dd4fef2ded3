from django.urls import path

from ledger.api.views import UserBalanceApi, UserCreditApi, UserDebitApi, UserTransactionsApi

urlpatterns = [
    path("users/<str:user_id>/balance", UserBalanceApi.as_view(), name="user-balance"),
    path("users/<str:user_id>/balance/credit", UserCreditApi.as_view(), name="user-credit"),
    path("users/<str:user_id>/balance/debit", UserDebitApi.as_view(), name="user-debit"),
    path("users/<str:user_id>/transactions", UserTransactionsApi.as_view(), name="user-statement"),
]
